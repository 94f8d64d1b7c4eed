import Foundation
import Hummingbird
import Logging
import MMEval
import MMFoundation

/// `mm serve`: the HTTP front of a `RetrievalService` on Hummingbird.
///
/// Routes: clip-retrieval's back end (`POST /knn-service`, `POST /metadata`, `GET /indices-list`,
/// `GET /config.json`), mm's own (`POST /search`, `/embed`, `/zeroshot`, `GET /health`,
/// `/metrics`), the search page (`GET /`, `/page/*`) and `GET /thumbnail/INDEX/ID` (only files
/// recorded in the index). Every refusal is JSON `{"status": N, "error": "one line"}`.
public struct Server {
    public struct Configuration: Sendable {
        public var host = "127.0.0.1"
        public var port = 1234
        /// Largest request body, bytes (413 beyond).
        public var maximumBodyBytes = 32 << 20
        /// A request must arrive whole within this many seconds (408 beyond); an idle or
        /// half-sent connection is closed after `idleSeconds`.
        public var bodySeconds = 20.0
        public var idleSeconds = 10.0
        public init() {}
    }

    public let service: RetrievalService
    public let configuration: Configuration
    let logger: Logger
    let metrics = Metrics()

    public init(service: RetrievalService, configuration: Configuration, logger: Logger = Logger(label: "mm.serve")) {
        self.service = service
        self.configuration = configuration
        self.logger = logger
    }

    /// Serves until SIGINT or SIGTERM, then finishes the requests in flight and returns.
    /// `onListening` is told the bound port (useful with port 0).
    public func run(onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let app = Application(
            router: router(),
            server: .http1(configuration: .init(idleTimeout: .milliseconds(Int64(configuration.idleSeconds * 1000)))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "mm"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? -1) },
            logger: logger
        )
        try await app.runService(gracefulShutdownSignals: [.sigterm, .sigint])
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: Guard(metrics: metrics, logger: logger))
        router.add(
            middleware: CORSMiddleware(allowOrigin: .all, allowHeaders: [.contentType, .accept, .origin], allowMethods: [.get, .post, .options]))
        let service = self.service

        // clip-retrieval's back end
        router.post("knn-service") { request, _ in try await json(service.knn(self.body(request))) }
        router.post("metadata") { request, _ in try await json(service.metadata(self.body(request))) }
        router.get("indices-list") { _, _ in try json(service.indexes.map(\.name)) }
        router.get("config.json") { request, _ in
            let host = request.head.authority.map { "http://\($0)" } ?? ""
            return try json(["defaultBackend": host, "defaultIndex": service.indexes[0].name])
        }

        // mm's API
        router.post("search") { request, _ in try await json(service.search(self.body(request))) }
        router.post("embed") { request, _ in try await json(service.embed(self.body(request))) }
        router.post("zeroshot") { request, _ in try await json(service.zeroShot(self.body(request))) }
        router.get("health") { _, _ in try json(service.health()) }
        router.get("metrics") { _, _ in
            let gauges =
                service.indexes.map {
                    (name: "mm_index_rows", help: "Rows of each served index.", labels: "index=\"\($0.name)\"", value: Double($0.index.count))
                }
                + [
                    (
                        name: "mm_compute_queue_depth", help: "Model calls and searches queued or running.", labels: "",
                        value: Double(service.compute.depth)
                    )
                ]
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(string: self.metrics.text(gauges: gauges))))
        }

        // Thumbnails: by index name and row id only.
        router.get("thumbnail/:index/:id") { _, context in
            let name = context.parameters.get("index") ?? ""
            guard let id = context.parameters.get("id").flatMap({ Int($0) }), id >= 0 else {
                throw ServeError.badRequest("thumbnail: the id must be a non-negative integer")
            }
            let file = try service.thumbnail(index: name, id: id)
            return Response(
                status: .ok, headers: [.contentType: file.type, .cacheControl: "max-age=3600"], body: .init(byteBuffer: ByteBuffer(bytes: file.data)))
        }

        // The page
        router.get("/") { _, _ in try Page.response("index.html") }
        router.get("page/:file") { _, context in try Page.response(context.parameters.get("file") ?? "") }
        return router
    }

    /// The request body as JSON: read up to the size limit (413 beyond), within the time limit
    /// (408 beyond), whatever the Content-Type.
    func body(_ request: Request) async throws -> JSONBody {
        let limit = configuration.maximumBodyBytes
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limit {
            throw ServeError(413, "body of \(declared) bytes is larger than the limit of \(limit)")
        }
        let seconds = configuration.bodySeconds
        let bytes = try await withThrowingTaskGroup(of: [UInt8]?.self) { group in
            group.addTask {
                var collected: [UInt8] = []
                for try await chunk in request.body {
                    guard collected.count + chunk.readableBytes <= limit else {
                        throw ServeError(413, "body larger than the limit of \(limit) bytes")
                    }
                    collected += chunk.readableBytesView
                }
                return collected
            }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
                return nil
            }
            let first = try await group.next()!
            group.cancelAll()
            guard let first else { throw ServeError(408, "the body did not arrive within \(Int(seconds)) s") }
            return first
        }
        return try JSONBody(bytes)
    }
}

/// A JSON response of status 200.
func json(_ object: Any) throws -> Response {
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try jsonBytes(object))))
}

/// Turns every error into a JSON refusal with a status and one line, and records each request's
/// route, status and latency.
struct Guard: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: Metrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let response: Response
        do {
            response = try await next(request, context)
        } catch {
            let (status, message): (Int, String)
            switch error {
            case let e as ServeError: (status, message) = (e.status, e.message)
            case let e as HTTPError: (status, message) = (Int(e.status.code), e.body ?? e.status.reasonPhrase)
            case is CancellationError: (status, message) = (408, "the request was cancelled")
            default:
                logger.error("\(request.method) \(request.uri.path): \(error)")
                (status, message) = (500, "internal error")
            }
            let line = message.split(whereSeparator: \.isNewline).first.map(String.init) ?? message
            response = Response(
                status: .init(code: status), headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: (try? jsonBytes(["status": status, "error": line])) ?? [])))
        }
        metrics.record(
            route: Self.route(request.uri.path), status: Int(response.status.code),
            seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        return response
    }

    /// The fixed route name of a path, for metrics labels.
    static func route(_ path: String) -> String {
        let known = ["/knn-service", "/metadata", "/indices-list", "/config.json", "/search", "/embed", "/zeroshot", "/health", "/metrics", "/"]
        if known.contains(path) { return path }
        if path.hasPrefix("/thumbnail/") { return "/thumbnail" }
        if path.hasPrefix("/page/") { return "/page" }
        return "other"
    }
}

/// The search page: files bundled with the module, looked up by a fixed list of names.
enum Page {
    static let files: [String: String] = [
        "index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"
    ]

    static func response(_ name: String) throws -> Response {
        guard let type = files[name], let path = Resources.locate("page/" + name, target: "MMServe").path,
            let data = FileManager.default.contents(atPath: path)
        else { throw ServeError.notFound("no such page") }
        return Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
