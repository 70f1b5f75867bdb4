import FleetCore
import Foundation

/// `--json` output: pretty, sorted keys, ISO-8601 dates, and every field present. Absent values
/// are `null` rather than missing, so scripts can read `.pid` of a stopped tenant.
public enum JSONOutput {
    public static func render(_ value: some Encodable) throws -> String {
        String(decoding: try FleetJSON.makeEncoder(pretty: true).encode(value), as: UTF8.self)
    }

    public static func render(_ tenant: TenantInfo) throws -> String {
        try render(TenantJSON(tenant))
    }

    public static func render(_ tenants: [TenantInfo]) throws -> String {
        try render(tenants.map(TenantJSON.init))
    }

    public static func render(_ bundles: [BundleInfo]) throws -> String {
        try render(bundles.map(BundleJSON.init))
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    private struct TenantJSON: Encodable {
        let tenant: TenantInfo
        init(_ tenant: TenantInfo) { self.tenant = tenant }

        func encode(to encoder: any Encoder) throws {
            try tenant.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            if tenant.pid == nil { try container.encodeNil(forKey: Key("pid")) }
            if tenant.runningSince == nil { try container.encodeNil(forKey: Key("runningSince")) }
            if tenant.failureReason == nil { try container.encodeNil(forKey: Key("failureReason")) }
        }
    }

    private struct BundleJSON: Encodable {
        let bundle: BundleInfo
        init(_ bundle: BundleInfo) { self.bundle = bundle }

        func encode(to encoder: any Encoder) throws {
            try bundle.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            if bundle.glibcVersion == nil { try container.encodeNil(forKey: Key("glibcVersion")) }
            if bundle.icuVersion == nil { try container.encodeNil(forKey: Key("icuVersion")) }
        }
    }
}
