/* The JSON API: one fetch wrapper whose failures carry the server's ``detail``. */
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

/** JSON from the API; a failure throws ApiError with the server's ``detail``. */
export async function api(path, options = {}) {
  let res;
  try {
    res = await fetch(path, {
      ...options,
      headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
    });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${e.message})`);
  }
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    let detail = body && typeof body === "object" && body.detail != null ? body.detail : `${res.status} ${res.statusText}`;
    if (typeof detail !== "string") detail = JSON.stringify(detail);
    const retry = res.headers.get("Retry-After");
    if (res.status === 503 && retry) detail += ` (retry in ${retry} s)`;
    throw new ApiError(res.status, detail);
  }
  return body;
}

export const post = (path, data) => api(path, { method: "POST", body: JSON.stringify(data) });
