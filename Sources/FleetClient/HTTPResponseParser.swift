/// Parses one HTTP/1.1 response as bytes arrive, however they are split, without sockets: the
/// transport feeds it what it reads and acts on the events.
///
/// Only what the CLI needs from the daemon: the status line, the framing headers
/// (`Transfer-Encoding: chunked`, `Content-Length`, else the body runs to the end of the
/// connection), and the body handed on as it arrives, so streamed NDJSON progress is seen line by
/// line. The head and every line of chunk framing are bounded; body bytes are never buffered here,
/// so a body of any announced size costs no more memory than the bytes fed in.
public struct HTTPResponseParser: Sendable {
    /// The status line of the final (non-1xx) response.
    public struct Head: Equatable, Sendable {
        public var status: Int
        public var reason: String

        public init(status: Int, reason: String) {
            self.status = status
            self.reason = reason
        }
    }

    public enum Event: Equatable, Sendable {
        case head(Head)
        /// Body bytes, in order; adjacent bytes from one `feed` come as one event.
        case body([UInt8])
        /// The response is complete; nothing more is parsed.
        case end
    }

    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case headTooLong(limit: Int)
        case malformedStatusLine
        case malformedHeader
        case invalidContentLength
        case invalidChunkSize
        case chunkLineTooLong(limit: Int)
        case malformedChunk
        /// The input ended before the response did.
        case truncated

        public var description: String {
            switch self {
            case .headTooLong(let limit): "the response head is longer than \(limit) bytes"
            case .malformedStatusLine: "the status line is not HTTP/1.x"
            case .malformedHeader: "a header line is malformed"
            case .invalidContentLength: "the Content-Length is invalid or given twice with different values"
            case .invalidChunkSize: "a chunk size is not a hexadecimal number of at most 15 digits"
            case .chunkLineTooLong(let limit): "a chunk size line is longer than \(limit) bytes"
            case .malformedChunk: "a chunk does not end with a line break"
            case .truncated: "the answer ended early"
            }
        }
    }

    public static let defaultMaxHeadLength = 64 << 10
    /// A chunk size line: at most 15 hex digits plus extensions, which the daemon never sends.
    static let maxChunkLineLength = 1024

    private enum State: Sendable {
        /// Status line and headers, one line at a time; `length` counts every byte of the head.
        case head(length: Int)
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        /// Trailer fields after the last chunk, read and dropped; `length` bounds them.
        case trailers(length: Int)
        case untilClose
        case done
    }

    public let maxHeadLength: Int
    private let bodyless: Bool
    private var state: State = .head(length: 0)
    /// The line being read, in the line-based states.
    private var line: [UInt8] = []
    private var statusLine: Head?
    private var contentLength: Int?
    private var chunked = false
    private var otherTransferCoding = false

    /// `requestMethod` matters only for HEAD, whose answer has no body whatever its headers say.
    public init(requestMethod: String = "GET", maxHeadLength: Int = HTTPResponseParser.defaultMaxHeadLength) {
        self.bodyless = requestMethod == "HEAD"
        self.maxHeadLength = maxHeadLength
    }

    public var isComplete: Bool {
        if case .done = state { return true }
        return false
    }

    /// The events `bytes` completes. After `.end`, further bytes are ignored.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(ParseError) -> [Event] {
        var events: [Event] = []
        var index = bytes.startIndex
        while index != bytes.endIndex {
            switch state {
            case .done:
                return events
            case .head(let length):
                let byte = bytes[index]
                bytes.formIndex(after: &index)
                guard length < maxHeadLength else { throw .headTooLong(limit: maxHeadLength) }
                state = .head(length: length + 1)
                if byte != UInt8(ascii: "\n") {
                    line.append(byte)
                    continue
                }
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                defer { line.removeAll(keepingCapacity: true) }
                if statusLine == nil {
                    statusLine = try Self.parseStatusLine(line)
                } else if !line.isEmpty {
                    try headerLine(line)
                } else if let head = try endOfHead() {
                    events.append(.head(head))
                    if case .done = state { events.append(.end) }
                }
            case .fixed(let remaining):
                let taken = bytes[index...].prefix(remaining)
                index = taken.endIndex
                Self.appendBody(taken, to: &events)
                state = remaining == taken.count ? .done : .fixed(remaining: remaining - taken.count)
                if case .done = state { events.append(.end) }
            case .chunkData(let remaining):
                let taken = bytes[index...].prefix(remaining)
                index = taken.endIndex
                Self.appendBody(taken, to: &events)
                state = remaining == taken.count ? .chunkDataEnd : .chunkData(remaining: remaining - taken.count)
            case .untilClose:
                Self.appendBody(bytes[index...], to: &events)
                index = bytes.endIndex
            case .chunkSize, .chunkDataEnd, .trailers:
                let byte = bytes[index]
                bytes.formIndex(after: &index)
                if let ended = try chunkFramingByte(byte) { events.append(ended) }
            }
        }
        return events
    }

    /// The connection ended: completes a body that runs to the end, or says the answer is cut short.
    public mutating func finish() throws(ParseError) -> [Event] {
        switch state {
        case .done: return []
        case .untilClose:
            state = .done
            return [.end]
        default: throw .truncated
        }
    }

    // MARK: - Head

    private static func parseStatusLine(_ line: [UInt8]) throws(ParseError) -> Head {
        // HTTP/1.x SP 3DIGIT SP reason (the reason may be empty, and its space missing).
        let prefix = Array("HTTP/1.".utf8)
        guard line.count >= 12, line.starts(with: prefix), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(line[7]),
            line[8] == UInt8(ascii: " ")
        else { throw .malformedStatusLine }
        var status = 0
        for byte in line[9..<12] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { throw .malformedStatusLine }
            status = status * 10 + Int(byte - UInt8(ascii: "0"))
        }
        guard status >= 100 else { throw .malformedStatusLine }
        if line.count > 12 {
            guard line[12] == UInt8(ascii: " ") else { throw .malformedStatusLine }
        }
        let reason = line.count > 13 ? String(decoding: line[13...], as: UTF8.self) : ""
        return Head(status: status, reason: reason)
    }

    private mutating func headerLine(_ line: [UInt8]) throws(ParseError) {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0,
            !line[..<colon].contains(where: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
        else { throw .malformedHeader }
        let name = String(decoding: line[..<colon], as: UTF8.self).lowercased()
        let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces()
        switch name {
        case "content-length":
            guard !value.isEmpty, value.utf8.count <= 18, value.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                let length = Int(value), contentLength == nil || contentLength == length
            else { throw .invalidContentLength }
            contentLength = length
        case "transfer-encoding":
            // The last coding decides: chunked frames the body; anything else runs to the close.
            for coding in value.split(separator: ",") {
                let coding = String(coding).trimmingSpaces().lowercased()
                chunked = coding == "chunked"
                otherTransferCoding = coding != "chunked"
            }
        default:
            break
        }
    }

    /// The blank line after the headers: a 1xx head is skipped, the final one chooses the framing.
    private mutating func endOfHead() throws(ParseError) -> Head? {
        guard let head = statusLine else { throw .malformedStatusLine }
        statusLine = nil
        defer { contentLength = nil; chunked = false; otherTransferCoding = false }
        if (100..<200).contains(head.status) && head.status != 101 {
            state = .head(length: 0)
            return nil
        }
        if bodyless || head.status == 204 || head.status == 304 || (100..<200).contains(head.status) {
            state = .done
        } else if chunked {
            state = .chunkSize
        } else if otherTransferCoding {
            state = .untilClose
        } else if let contentLength {
            state = contentLength == 0 ? .done : .fixed(remaining: contentLength)
        } else {
            state = .untilClose
        }
        return head
    }

    // MARK: - Chunks

    /// One byte of chunk framing; returns `.end` when the last chunk and its trailers are read.
    private mutating func chunkFramingByte(_ byte: UInt8) throws(ParseError) -> Event? {
        if byte != UInt8(ascii: "\n") {
            switch state {
            case .trailers(let length):
                guard length < maxHeadLength else { throw .headTooLong(limit: maxHeadLength) }
                state = .trailers(length: length + 1)
            default:
                guard line.count < Self.maxChunkLineLength else { throw .chunkLineTooLong(limit: Self.maxChunkLineLength) }
            }
            line.append(byte)
            return nil
        }
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        defer { line.removeAll(keepingCapacity: true) }
        switch state {
        case .chunkSize:
            let size = try Self.parseChunkSize(line)
            state = size == 0 ? .trailers(length: 0) : .chunkData(remaining: size)
        case .chunkDataEnd:
            guard line.isEmpty else { throw .malformedChunk }
            state = .chunkSize
        case .trailers:
            if line.isEmpty {
                state = .done
                return .end
            }
        default:
            break
        }
        return nil
    }

    private static func parseChunkSize(_ line: [UInt8]) throws(ParseError) -> Int {
        // Extensions after ";" are allowed and ignored.
        let digits = line.prefix { $0 != UInt8(ascii: ";") }.drop { $0 == UInt8(ascii: " ") }.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }
        guard !digits.isEmpty, digits.count <= 15 else { throw .invalidChunkSize }
        var size = 0
        for byte in digits {
            let value: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = byte - UInt8(ascii: "A") + 10
            default: throw .invalidChunkSize
            }
            size = size << 4 | Int(value)
        }
        return size
    }

    private static func appendBody(_ bytes: some Collection<UInt8>, to events: inout [Event]) {
        guard !bytes.isEmpty else { return }
        if case .body(var previous) = events.last {
            events.removeLast()
            previous.append(contentsOf: bytes)
            events.append(.body(previous))
        } else {
            events.append(.body(Array(bytes)))
        }
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
