import ArgumentParser
import FleetCLI
import FleetClient
import FleetCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the CLI writes: results to stdout, progress and errors to stderr.
enum Terminal {
    static func out(_ text: String) {
        print(text)
    }

    static func raw(_ bytes: [UInt8]) {
        // Unbuffered: log lines should show up as they arrive.
        FileHandle.standardOutput.write(Data(bytes))
    }

    static func err(_ text: String) {
        fflush(nil)  // keep stdout and stderr in order
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// A question on stderr without a line break, so the answer is typed after it.
    static func prompt(_ text: String) {
        fflush(nil)  // keep stdout and stderr in order
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func error(_ message: String) {
        err("error: " + message)
    }

    static func progress(_ event: StreamEvent) {
        guard let message = event.message else { return }
        var line = "==> " + message
        if let completed = event.completed, let total = event.total {
            line += " [\(completed)/\(total)]"
        } else if let completed = event.completed {
            line += " [\(completed)]"
        }
        err(line)
    }

    static var stdinIsTerminal: Bool { isatty(STDIN_FILENO) == 1 }

    static func printJSON(_ value: some Encodable) throws {
        out(try JSONOutput.render(value))
    }

    static func printJSON(_ tenant: TenantInfo) throws {
        out(try JSONOutput.render(tenant))
    }

    static func printJSON(_ tenants: [TenantInfo]) throws {
        out(try JSONOutput.render(tenants))
    }

    static func printJSON(_ bundles: [BundleInfo]) throws {
        out(try JSONOutput.render(bundles))
    }
}

/// Runs a command body, turning any error into `error: <message>` on stderr and exit status 1.
func reportingErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let exit as ExitCode {
        throw exit
    } catch let exit as CleanExit {
        throw exit
    } catch {
        Terminal.error(userMessage(for: error))
        throw ExitCode(1)
    }
}

/// The message a user sees for `error`: ours are written for users; anything else is described
/// plainly rather than as Foundation's "The operation couldn't be completed".
func userMessage(for error: any Error) -> String {
    switch error {
    case let error as FleetError: error.description
    case let error as APIErrorBody: error.message
    case is CancellationError: "interrupted"
    case let error as DecodingError: "unexpected data: \(error)"
    default: String(describing: error)
    }
}

/// Validates a tenant name before anything is sent to the daemon.
func validatedTenantName(_ raw: String) throws -> TenantName {
    try TenantName(validating: raw)
}
