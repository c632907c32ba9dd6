/* A prompt read token by token: its FIM markers, the predicting position, the prefix and
 * suffix, and tokens written for reading out of their code. */
import { shorten, visible } from "./format.js";

const FIM_PREFIX = "<fim_prefix>", FIM_SUFFIX = "<fim_suffix>", FIM_MIDDLE = "<fim_middle>";
/** Control tokens as the tokenizer decodes them (prompt text that spells one is split into
 * ordinary tokens, so a whole token equal to one of these is the control token itself). */
export const isControl = (t) => /^<(fim_(prefix|suffix|middle|pad)|\|endoftext\|)>$/.test(String(t));
export const REGION_RGB = { prefix: "76,120,168", suffix: "245,133,24" };
export const PREDICTING = "#d62728";

/** A prompt's parts from its tokens: the FIM markers' positions, the predicting position
 * (``<fim_middle>``, else the last query), the prefix and suffix token ranges and where the
 * masked span was (just before ``<fim_suffix>``). A left-to-right prompt has no markers. */
export function promptParts(tokens) {
  const T = tokens.length;
  const p = tokens.indexOf(FIM_PREFIX), s = tokens.indexOf(FIM_SUFFIX), m = tokens.lastIndexOf(FIM_MIDDLE);
  const regions = [];
  if (p >= 0 && s > p + 1) regions.push({ name: "prefix", from: p + 1, to: s - 1 });
  const end = (m > s ? m : T) - 1;
  if (s >= 0 && end > s) regions.push({ name: "suffix", from: s + 1, to: end });
  return {
    predicting: m >= 0 ? m : T - 1, regions, hole: s >= 0 ? s : null,
    markers: [[p, FIM_PREFIX], [s, FIM_SUFFIX], [m, FIM_MIDDLE]].filter(([i]) => i >= 0),
  };
}

/** A token for reading out of its code: control tokens as they are, others quoted with
 * their whitespace made visible. Plain text: escape it (plotText) before plotly shows it. */
const tokenText = (t, n = 24) => (isControl(t) ? String(t) : `"${shorten(visible(t), n)}"`);
export const tokenName = (tokens, i, n = 24) => `${i} ${tokenText(tokens[i], n)}`;

/** The token texts of a pattern (positions when the server sent none). */
export const patternTokens = (pattern) => (pattern.tokens && pattern.tokens.length === pattern.z.length
  ? pattern.tokens : Array.from({ length: pattern.z.length }, (_, i) => `#${i}`));
