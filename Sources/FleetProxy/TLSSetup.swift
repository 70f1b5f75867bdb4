import Crypto
import FleetCore
import Foundation
import NIOSSL
import SwiftASN1
import X509

/// The proxy's TLS: the operator's certificate, or one generated once under the root.
public enum TLSSetup {
    public struct Files: Sendable, Equatable {
        public var certificate: String
        public var privateKey: String

        public init(certificate: String, privateKey: String) {
            self.certificate = certificate
            self.privateKey = privateKey
        }
    }

    /// The generated pair's location under the root.
    public static func defaultFiles(root: String) -> Files {
        Files(certificate: root + "/tls/server.crt", privateKey: root + "/tls/server.key")
    }

    /// Loads `files`; when they are the defaults and do not exist yet, generates a self-signed pair first.
    public static func makeContext(files: Files, generateIfMissing: Bool, hostNames: [String]) throws -> NIOSSLContext {
        if generateIfMissing && !FileManager.default.fileExists(atPath: files.certificate) {
            try generateSelfSigned(files: files, hostNames: hostNames)
        }
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificate)
            key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
        } catch {
            throw FleetError.invalidRequest("cannot load the TLS certificate \(files.certificate) and key \(files.privateKey): \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)
        )
        configuration.minimumTLSVersion = .tlsv12
        // PostgreSQL 17 clients using sslnegotiation=direct insist on it; older clients send no ALPN at all.
        configuration.applicationProtocols = ["postgresql"]
        return try NIOSSLContext(configuration: configuration)
    }

    static func generateSelfSigned(files: Files, hostNames: [String]) throws {
        let key = P256.Signing.PrivateKey()
        let privateKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName {
            OrganizationName("pgfleet")
            CommonName(hostNames.first ?? "localhost")
        }
        var alternativeNames: [GeneralName] = Array(Set(["localhost"] + hostNames)).sorted().map { .dnsName($0) }
        alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])))
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: privateKey.publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                // Its own CA, so clients can trust it with sslmode=verify-ca and sslrootcert=server.crt.
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(alternativeNames)
            },
            issuerPrivateKey: privateKey
        )
        let directory = (files.certificate as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try write(try privateKey.serializeAsPEM().pemString + "\n", to: files.privateKey, mode: 0o600)
        try write(try certificate.serializeAsPEM().pemString + "\n", to: files.certificate, mode: 0o644)
    }

    private static func write(_ text: String, to path: String, mode: Int) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
            throw FleetError.failed("cannot write \(path)")
        }
    }
}
