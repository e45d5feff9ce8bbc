"""The wire-neutral transport: input skeleton, per-host pool and attempt, eager writes, hosts."""
