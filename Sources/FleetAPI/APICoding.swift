import FleetCore
import Foundation
import Hummingbird

/// JSON as the API speaks it: ISO-8601 dates, sorted keys (stable output for humans and diffs).
enum APICoding {
    static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    /// Request bodies are small JSON documents; anything bigger is a mistake or an attack.
    static let maxRequestBody = 64 * 1024

    static let jsonContentType = "application/json; charset=utf-8"
    static let ndjsonContentType = "application/x-ndjson"
    static let textContentType = "text/plain; charset=utf-8"
    static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    static func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        jsonResponse(bytes: try makeEncoder().encode(value), status: status)
    }

    /// A JSON document already encoded, followed by a newline as every answer is.
    static func jsonResponse(bytes: some Collection<UInt8>, status: HTTPResponse.Status = .ok) -> Response {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(bytes.count + 1)
        buffer.writeBytes(bytes)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return Response(
            status: status,
            headers: [.contentType: jsonContentType],
            body: ResponseBody(byteBuffer: buffer)
        )
    }

    /// Decodes a request body, answering 400 with a message that names the problem but never
    /// echoes the body (it may carry a password).
    static func decodeBody<T: Decodable>(_ type: T.Type, from request: Request) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxRequestBody)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw FleetError.invalidRequest("request body is larger than \(maxRequestBody) bytes")
        }
        guard buffer.readableBytes > 0 else {
            throw FleetError.invalidRequest("request body is empty; expected a JSON \(T.self)")
        }
        do {
            return try makeDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw FleetError.invalidRequest("invalid JSON \(T.self): \(describe(error))")
        } catch {
            throw FleetError.invalidRequest("invalid JSON \(T.self)")
        }
    }

    /// Names the field and the kind of problem; never includes the offending value.
    static func describe(_ error: DecodingError) -> String {
        func path(_ codingPath: [any CodingKey]) -> String {
            let joined = codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return joined.isEmpty ? "the document" : "\"\(joined)\""
        }
        switch error {
        case .keyNotFound(let key, let context):
            return "missing field \(path(context.codingPath + [key]))"
        case .typeMismatch(let type, let context):
            return "\(path(context.codingPath)) is not a \(type)"
        case .valueNotFound(let type, let context):
            return "\(path(context.codingPath)) is null, expected a \(type)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "not valid JSON" : "\(path(context.codingPath)) is invalid"
        @unknown default:
            return "not valid JSON"
        }
    }
}
