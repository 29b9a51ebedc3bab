"""Model lifecycle: training on replayed events, the versioned registry, and inline scoring."""
