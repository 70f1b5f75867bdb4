import FleetCore

/// Cuts a byte stream into lines, however the stream was chunked, with a bound on line length so
/// a confused peer cannot make the client buffer without limit.
public struct NDJSONSplitter: Sendable {
    public static let defaultMaxLineLength = 1 << 20

    public let maxLineLength: Int
    private var pending: [UInt8] = []

    public init(maxLineLength: Int = NDJSONSplitter.defaultMaxLineLength) {
        self.maxLineLength = maxLineLength
    }

    /// The complete lines `bytes` finishes, without their line breaks; empty lines are skipped.
    public mutating func append(_ bytes: some Sequence<UInt8>) throws(FleetError) -> [[UInt8]] {
        var lines: [[UInt8]] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                if pending.last == UInt8(ascii: "\r") { pending.removeLast() }
                if !pending.isEmpty { lines.append(pending) }
                pending.removeAll(keepingCapacity: true)
            } else {
                guard pending.count < maxLineLength else {
                    throw .failed("the daemon sent a stream line longer than \(maxLineLength) bytes")
                }
                pending.append(byte)
            }
        }
        return lines
    }

    /// What is left when the stream ends: a last line without a line break, if any.
    public mutating func finish() -> [UInt8]? {
        defer { pending.removeAll() }
        return pending.isEmpty ? nil : pending
    }
}
