import FleetCore
import Foundation
import Hummingbird
import Logging

/// Serves a long fleet operation as an NDJSON stream of `StreamEvent`s: the operation's progress
/// reports as they come, then one `result` or `error` event.
///
/// The operation runs in its own task, not in the response writer's: a client that goes away
/// (Ctrl-C on `pgfleet tenant create`) must not cancel an initdb or a bundle copy half-way and
/// leave debris. The operation finishes; only the stream stops being written.
enum ProgressStream {
    /// Progress events are small and few; if a client reads slower than the fleet reports, the
    /// oldest progress events are dropped rather than buffered without bound. The final event is
    /// the newest, so it is never the one dropped.
    static let bufferedEvents = 1024

    static func response(
        logger: Logger,
        method: String,
        path: String,
        operation: @escaping @Sendable (_ progress: @escaping ProgressReporter) async throws -> StreamEvent
    ) -> Response {
        let body = ResponseBody { writer in
            let (events, continuation) = AsyncStream.makeStream(
                of: StreamEvent.self,
                bufferingPolicy: .bufferingNewest(bufferedEvents)
            )
            Task {
                let final: StreamEvent
                do {
                    final = try await operation { event in
                        continuation.yield(progressOnly(event))
                    }
                } catch {
                    let (_, body) = APIErrorMapping.map(error, logger: logger, method: method, path: path)
                    final = StreamEvent(kind: .error, error: body)
                }
                continuation.yield(final)
                continuation.finish()
            }
            let encoder = APICoding.makeEncoder()
            for await event in events {
                var line = try encoder.encode(event)
                line.append(UInt8(ascii: "\n"))
                try await writer.write(ByteBuffer(bytes: line))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: APICoding.ndjsonContentType], body: body)
    }

    /// A progress report cannot pose as the final event, nor carry a result or a secret.
    static func progressOnly(_ event: StreamEvent) -> StreamEvent {
        StreamEvent(kind: .progress, message: event.message, completed: event.completed, total: event.total)
    }
}
