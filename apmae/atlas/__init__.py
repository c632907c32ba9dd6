"""The pattern atlas: embeddings, clusters per head, correctness prediction, interventions."""
