import Foundation
import NIOCore
import NIOSSL
import PostgresNIO

/// Turns PostgresNIO's errors into the store's ``SQLError`` classes. PostgresNIO keeps the server's message out of
/// `PSQLError.description` (it may hold data); the store's errors carry it, with the SQLSTATE and the statement,
/// because they go to the coordinator's log and an operator needs them.
enum PostgresErrors {
    struct Classified {
        var error: SQLError
        var serializationFailure = false
        var connectionLost = false
        /// The server's SQLSTATE and the routine that raised the error, when the server answered with one.
        var sqlState: String?
        var routine: String?
    }

    /// Classifies the failure of a statement.
    static func classify(
        _ error: any Error, sql: String, configuration: PostgresConfiguration, timedOut: Bool
    )
        -> Classified
    {
        let address = configuration.address
        if timedOut {
            return Classified(
                error: .unavailable(
                    "PostgreSQL at \(address) gave no answer within \(configuration.queryTimeout) s (query_timeout); "
                        + "the connection was closed. Statement: \(sql)"),
                connectionLost: true)
        }
        if let error = error as? SQLError { return Classified(error: error) }
        if let legacy = error as? PostgresError {
            // Prepared statements answer through PostgresNIO's older API, which converts its errors to this type.
            switch legacy {
            case .server(let response):
                let fields = response.fields
                let message = serverMessage(fields[.message], detail: fields[.detail], hint: fields[.hint])
                return classify(
                    state: fields[.sqlState] ?? "?????", routine: fields[.routine], message: message, sql: sql,
                    address: address)
            case .connectionClosed, .protocol:
                return Classified(
                    error: .unavailable("lost the connection to PostgreSQL at \(address): \(legacy)"), connectionLost: true)
            }
        }
        guard let psql = error as? PSQLError else {
            if let decoding = error as? PostgresDecodingError {
                return Classified(error: .other("cannot read PostgreSQL's answer (\(decoding)) to: \(sql)"))
            }
            return Classified(
                error: .unavailable("lost the connection to PostgreSQL at \(address): \(error)"), connectionLost: true)
        }
        guard psql.code == .server, let info = psql.serverInfo else {
            if isConnectionFailure(psql) {
                return Classified(
                    error: .unavailable("lost the connection to PostgreSQL at \(address): \(describe(psql))"),
                    connectionLost: true)
            }
            return Classified(error: .other("PostgreSQL at \(address): \(describe(psql)); statement: \(sql)"))
        }
        return classify(
            state: info[.sqlState] ?? "?????", routine: info[.routine], message: serverMessage(info), sql: sql,
            address: address)
    }

    /// Classifies an error the server answered with SQLSTATE `state`, raised by `routine`.
    private static func classify(
        state: String, routine: String?, message serverMessage: String, sql: String, address: String
    ) -> Classified {
        let message = serverMessage + " (SQLSTATE \(state)); statement: \(sql)"
        var classified: Classified
        switch state {
        case "40001", "40P01":
            classified = Classified(error: .other(message), serializationFailure: true)
        case _ where state.hasPrefix("23"):
            classified = Classified(error: .constraint(message))
        case "25006",
            _ where state.hasPrefix("53") || state.hasPrefix("58"):
            classified = Classified(error: .storage("PostgreSQL at \(address) cannot store the change: " + message))
        case "57P01", "57P02", "57P03",
            _ where state.hasPrefix("08"):
            classified = Classified(
                error: .unavailable("PostgreSQL at \(address) ended the connection: " + message), connectionLost: true)
        default:
            classified = Classified(error: .other("PostgreSQL at \(address) refused: " + message))
        }
        classified.sqlState = state
        classified.routine = routine
        return classified
    }

    /// Classifies a failure to connect: an unreachable server is `.unavailable`; a server that refuses the role,
    /// password, database or TLS settings is `.other`, since waiting does not help.
    static func classifyConnect(_ error: any Error, configuration: PostgresConfiguration) -> SQLError {
        let address = configuration.address
        let who = "user \(configuration.user), database \(configuration.database)"
        guard let psql = error as? PSQLError else {
            return .unavailable("cannot connect to PostgreSQL at \(address): \(error)")
        }
        if psql.code == .server, let info = psql.serverInfo {
            let state = info[.sqlState] ?? "?????"
            let message = "\(serverMessage(info)) (SQLSTATE \(state))"
            if state == "57P03" || state == "53300" || state.hasPrefix("08") {
                return .unavailable("PostgreSQL at \(address) does not take connections now: \(message)")
            }
            var hint = ""
            if state.hasPrefix("28") {
                hint = "; check the role and the password (password file or \(PostgresConfiguration.passwordEnvironmentVariable))"
            } else if state == "3D000" {
                hint = "; create the database or correct the URL's path"
            }
            return .other("PostgreSQL at \(address) refused the connection (\(who)): \(message)\(hint)")
        }
        switch psql.code {
        case .sslUnsupported:
            return .other(
                "PostgreSQL at \(address) does not offer TLS but sslmode=\(configuration.sslMode.rawValue) requires "
                    + "it; enable ssl on the server, or use sslmode=disable only on a trusted network")
        case .authMechanismRequiresPassword:
            return .other(
                "PostgreSQL at \(address) asks a password for \(who) but none was given; use a password file or "
                    + PostgresConfiguration.passwordEnvironmentVariable)
        case .unsupportedAuthMechanism, .saslError:
            return .other("PostgreSQL at \(address) refused the authentication of \(who): \(describe(psql))")
        default:
            if let underlying = psql.underlying, underlying is NIOSSLError || underlying is BoringSSLError {
                return .other(
                    "the TLS handshake with PostgreSQL at \(address) failed (sslmode="
                        + "\(configuration.sslMode.rawValue)): \(underlying); check sslrootcert and the server's "
                        + "certificate")
            }
            return .unavailable("cannot connect to PostgreSQL at \(address): \(describe(psql))")
        }
    }

    static func isConnectionFailure(_ error: any Error) -> Bool {
        if let legacy = error as? PostgresError {
            guard case .server(let response) = legacy else { return true }
            let state = response.fields[.sqlState] ?? ""
            return state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state)
        }
        guard let psql = error as? PSQLError else { return !(error is PostgresDecodingError) }
        switch psql.code {
        case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
            .messageDecodingFailure, .unexpectedBackendMessage:
            return true
        case .server:
            let state = psql.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state)
        default:
            return false
        }
    }

    private static func serverMessage(_ info: PSQLError.ServerInfo) -> String {
        serverMessage(info[.message], detail: info[.detail], hint: info[.hint])
    }

    private static func serverMessage(_ message: String?, detail: String?, hint: String?) -> String {
        var text = message ?? "no message"
        if let detail { text += " — \(detail)" }
        if let hint { text += " (hint: \(hint))" }
        return text
    }

    private static func describe(_ error: PSQLError) -> String {
        var text = "\(error.code)"
        if let underlying = error.underlying { text += ": \(underlying)" }
        if let info = error.serverInfo { text += ": \(serverMessage(info))" }
        return text
    }
}
