/// Tar and gzip for build contexts: packing on the CLI's side, safe unpacking on the agent's.
public enum Archive {}
