import FleetCore
import Hummingbird
import Logging

/// Turns every error a route throws into a JSON `APIErrorBody` with the right status.
///
/// `FleetError` is written for users and goes out as it is. Anything else is an internal error:
/// its text goes to the log only, the client gets a generic message.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            let (status, body) = APIErrorMapping.map(error, logger: logger, method: request.method.rawValue, path: request.uri.path)
            response = try APICoding.jsonResponse(body, status: status)
        }
        // Method, path and status only: bodies carry passwords.
        logger.debug("API request", metadata: [
            APILogKey.method: "\(request.method.rawValue)", APILogKey.path: "\(request.uri.path)", APILogKey.status: "\(response.status.code)",
        ])
        return response
    }
}

/// The API's log-metadata keys.
enum APILogKey {
    static let method = "http.method"
    static let path = "http.path"
    static let status = "http.status"
    static let errorCode = "error.code"
    static let errorMessage = "error.message"
    static let error = "error"
    static let socket = "socket"
}

enum APIErrorMapping {
    static let internalErrorMessage = "internal error in pgfleet serve; the daemon's log has the details"

    /// FleetError's status for each of its codes.
    static let statusByCode: [String: Int] = {
        let samples: [FleetError] = [
            .invalidTenantName(name: "", reason: ""), .invalidRequest(""), .tenantExists(""), .tenantNotFound(""),
            .bundleNotFound(""), .bundleExists(""), .noBundle(major: nil), .invalidBundle(""), .conflict(""),
            .daemonUnavailable(""), .failed(""),
        ]
        return Dictionary(samples.map { ($0.code, $0.httpStatus) }, uniquingKeysWith: { first, _ in first })
    }()

    /// The status and body for `error`; logs what the client is not told.
    static func map(_ error: any Error, logger: Logger, method: String, path: String) -> (HTTPResponse.Status, APIErrorBody) {
        switch error {
        case let error as FleetError:
            let status = HTTPResponse.Status(code: error.httpStatus)
            if error.httpStatus >= 500 {
                logger.error("API request failed", metadata: [
                    APILogKey.method: "\(method)", APILogKey.path: "\(path)", APILogKey.errorCode: "\(error.code)", APILogKey.errorMessage: "\(error.description)",
                ])
            } else {
                logger.debug("API request refused", metadata: [
                    APILogKey.method: "\(method)", APILogKey.path: "\(path)", APILogKey.errorCode: "\(error.code)",
                ])
            }
            return (status, APIErrorBody(error))
        case let error as APIErrorBody:
            // A FleetControl may pass on an error body it already holds.
            return (HTTPResponse.Status(code: statusByCode[error.code] ?? 500), error)
        case let error as any HTTPResponseError:
            // Hummingbird's own answers: unknown route, wrong method, body too large.
            let status = error.status
            let code: String
            let message: String
            switch status {
            case .notFound:
                code = "not_found"
                message = "no such API route: \(method) \(path)"
            case .methodNotAllowed:
                code = "method_not_allowed"
                message = "\(method) is not allowed on \(path)"
            case .contentTooLarge:
                code = "invalid_request"
                message = "request body is too large"
            default:
                code = status.code >= 500 ? "failed" : "invalid_request"
                message = status.reasonPhrase
            }
            if status.code >= 500 {
                logger.error("API request failed", metadata: [APILogKey.method: "\(method)", APILogKey.path: "\(path)", APILogKey.error: "\(error)"])
            }
            return (status, APIErrorBody(code: code, message: message))
        default:
            logger.error("API request failed with an internal error", metadata: [
                APILogKey.method: "\(method)", APILogKey.path: "\(path)", APILogKey.error: "\(String(reflecting: error))",
            ])
            return (.internalServerError, APIErrorBody(code: "internal_error", message: internalErrorMessage))
        }
    }
}
