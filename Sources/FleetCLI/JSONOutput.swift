import FleetClient
import FleetCore
import Foundation

/// `--json` output: pretty, sorted keys, ISO-8601 dates, and every field present. Absent values
/// are `null` rather than missing, so scripts can read `.pid` of a stopped tenant.
public enum JSONOutput {
    public static func render(_ value: some Encodable) throws -> String {
        String(decoding: try FleetJSON.makeEncoder(pretty: true).encode(value), as: UTF8.self)
    }

    // Tenants go through FleetCore's TenantJSON, which writes what JSONEncoder wrote here (nulls
    // included) several times faster: a list of thousands is a megabyte.
    public static func render(_ tenant: TenantInfo) throws -> String {
        String(decoding: TenantJSON.encode(tenant, style: .pretty), as: UTF8.self)
    }

    public static func render(_ tenants: [TenantInfo]) throws -> String {
        String(decoding: TenantJSON.encode(tenants, style: .pretty), as: UTF8.self)
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
