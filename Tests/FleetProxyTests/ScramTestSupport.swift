@testable import FleetProxy

// Verifiers made from passwords, for the tests only: the proxy itself only ever reads verifiers
// (the daemon makes them, with SASLprep, in FleetSupervisor's ScramVerifier). PBKDF2 is written
// out here, independently of the daemon's, so these tests also check that the two agree with
// RFC 7677's vector.

extension Scram {
    static func pbkdf2(password: [UInt8], salt: [UInt8], iterations: Int) -> [UInt8] {
        var u = hmac(key: password, salt + [0, 0, 0, 1])
        var result = u
        for _ in 1..<max(iterations, 1) {
            u = hmac(key: password, u)
            for index in result.indices { result[index] ^= u[index] }
        }
        return result
    }
}

extension ScramVerifier {
    /// What PostgreSQL would store for an ASCII `password`.
    static func make(password: String, salt: [UInt8], iterations: Int) -> ScramVerifier {
        let salted = Scram.pbkdf2(password: Array(password.utf8), salt: salt, iterations: iterations)
        let clientKey = Scram.hmac(key: salted, "Client Key")
        return ScramVerifier(
            iterations: iterations, salt: salt, storedKey: Scram.sha256(clientKey), serverKey: Scram.hmac(key: salted, "Server Key")
        )
    }
}
