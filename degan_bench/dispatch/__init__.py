"""Running many recipes: job expansion, local GPU queues and cluster submission."""
