import FleetCore
import NIOCore
import PGWire

/// Server connections are shared only between clients of the same tenant that sent the same
/// startup parameters (user, database, options, application_name, …) after routing.
struct PoolKey: Hashable {
    var tenant: TenantName
    var socketPath: String
    var parameters: [StartupParameter]
}

/// A logged-in server connection owned by the pool: idle in it, or lent to one client. Its
/// state is the pool's `PoolState`'s, under `id`. Loop-bound, like the pool.
final class PooledServer {
    let id: PoolState.ServerID
    let channel: any Channel
    let key: PoolKey
    let backendKey: BackendKeyData?
    /// ParameterStatus values the server has reported, which the next client is told.
    var parameters: [ParameterStatus] {
        didSet { encodedParameters = nil }
    }
    /// `parameters` as the ParameterStatus messages a client is sent, encoded once per change.
    private var encodedParameters: ByteBuffer?

    init(id: PoolState.ServerID, channel: any Channel, key: PoolKey, session: ServerSession) {
        self.id = id
        self.channel = channel
        self.key = key
        self.backendKey = session.backendKey
        self.parameters = session.parameters
    }

    /// Writes the ParameterStatus messages for the next client.
    func writeParameters(into out: inout ByteBuffer) {
        if encodedParameters == nil {
            var encoded = channel.allocator.buffer(capacity: 512)
            for parameter in parameters { parameter.encode(into: &encoded) }
            encodedParameters = encoded
        }
        out.writeImmutableBuffer(encodedParameters!)
    }

    /// Applies the ParameterStatus changes a reset caused.
    func apply(_ changes: [ParameterStatus]) {
        for change in changes {
            if let index = parameters.firstIndex(where: { $0.name == change.name }) {
                parameters[index] = change
            } else {
                parameters.append(change)
            }
        }
    }
}
