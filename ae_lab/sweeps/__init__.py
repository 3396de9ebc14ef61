"""A ``-m`` sweep as a whole: its directory claimed, the cores shared between its jobs, and its
results gathered into a summary and a report beside the jobs."""
