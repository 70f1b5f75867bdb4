/// What pgfleet creates inside every tenant cluster, named once for the daemon and the proxy.
public enum TenantRoles {
    /// The role the daemon's health checks and the proxy's pool log in as, by peer authentication
    /// mapped from the daemon's OS user only.
    public static let daemon = "pgfleet"
    /// In the `postgres` database, executable by `daemon` only: a login role's password verifier,
    /// or NULL when the role cannot log in now (no such role, NOLOGIN, past VALID UNTIL).
    public static let authSecretFunction = "pgfleet.auth_secret"
}
