/// A request the service refuses: an HTTP status and one line saying why (sent as JSON).
public struct ServeError: Error, CustomStringConvertible, Equatable {
    public let status: Int
    public let message: String

    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status): \(message)" }

    static func badRequest(_ message: String) -> ServeError { ServeError(400, message) }
    static func notFound(_ message: String) -> ServeError { ServeError(404, message) }
}

/// A configuration the service cannot start with (an unreadable index, a bad indices file).
public struct ServeSetupError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
