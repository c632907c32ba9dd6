"""The explorer's FastAPI app (its routes and templates arrive with the explorer issue)."""
