import ArgumentParser
import Dispatch
import Foundation
import Logging
import MMEval
import MMServe

/// `mm serve`: keep a model and indexes loaded and answer HTTP queries (clip-retrieval's API,
/// mm's API, a search page).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve indexes over HTTP: clip-retrieval's back-end API, mm's /search /embed /zeroshot, and a search page.",
        discussion: """
            Listens on 127.0.0.1 unless --host says otherwise; stops cleanly on SIGINT/SIGTERM.

              mm serve gallery.mmi -c model.safetensors --port 1234
              mm serve --index photos=photos.mmi --index captions=captions.mmi -c model.safetensors
              mm serve --indices-paths indices_paths.json -c model.safetensors   # clip-retrieval's form

            See docs/serve.md for the endpoints.
            """
    )

    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "Index files (named after the file), or NAME=PATH.") var indexes: [String] = []
    @Option(name: .customLong("index"), help: "An index as NAME=PATH (repeatable).") var namedIndexes: [String] = []
    @Option(help: "clip-retrieval's indices_paths.json: {\"name\": \"index path\"}.") var indicesPaths: String?
    @Option(help: "Address to listen on (default 127.0.0.1: this machine only).") var host = "127.0.0.1"
    @Option(help: "Port (0: any free port, printed on start).") var port = 1234
    @Option(help: "Largest request body in MB.") var maxBodyMb = 32
    @Option(help: "Largest num_images / k a request may ask for.") var maxResults = 1000
    @Option(help: "Requests that may wait for the model before new ones get 503.") var queueLimit = 64
    @Option(help: "Seconds a connection may sit idle or trickle its headers before it is closed.") var idleSeconds = 10.0
    @Option(help: "Seconds a request body may take to arrive (408 beyond).") var bodySeconds = 20.0
    @Flag(help: "Let image_url queries make this server fetch the address (a request to an arbitrary address; off by default).")
    var allowUrlFetch = false
    @Option(help: "Log level (trace, debug, info, notice, warning, error).") var logLevel = "info"

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0…65535") }
        guard (1...4096).contains(maxBodyMb) else { throw ValidationError("--max-body-mb must be 1…4096") }
        guard (1...100_000).contains(maxResults) else { throw ValidationError("--max-results must be 1…100000") }
        guard (1...100_000).contains(queueLimit) else { throw ValidationError("--queue-limit must be 1…100000") }
        guard (0.1...3600).contains(idleSeconds), (0.1...3600).contains(bodySeconds) else {
            throw ValidationError("--idle-seconds and --body-seconds must be 0.1…3600")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level: one of trace, debug, info, notice, warning, error, critical")
        }
        guard !indexes.isEmpty || !namedIndexes.isEmpty || indicesPaths != nil else {
            throw ValidationError("give an index file, --index NAME=PATH or --indices-paths FILE")
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let specs: [(name: String, path: String)]
        do {
            specs = try (indexes + namedIndexes).map(IndexSpecs.parse(argument:)) + (indicesPaths.map(IndexSpecs.parse(indicesFile:)) ?? [])
        } catch { throw CommandError("\(error)") }
        let embedder = try modelOptions.embedder()
        var served: [ServedIndex] = []
        for spec in specs {
            let s = try ServedIndex.load(name: spec.name, path: spec.path)
            warn("index \(s.name): \(s.index.count) rows from \(spec.path)\(s.approximate.map { ", approximate \($0.info.factory)" } ?? "")")
            if let reason = s.approximate?.slowScanReason { warn("index \(s.name): \(reason)") }
            served.append(s)
        }
        var limits = RetrievalService.Limits()
        limits.results = maxResults
        limits.resultIDs = max(maxResults, limits.resultIDs)
        let service: RetrievalService
        do {
            service = try RetrievalService(
                embedder: embedder, indexes: served, limits: limits, allowURLFetch: allowUrlFetch, maximumWaiting: queueLimit)
        } catch let e as ServeSetupError { throw CommandError("\(e)") }
        var configuration = Server.Configuration()
        configuration.host = host
        configuration.port = port
        configuration.maximumBodyBytes = maxBodyMb << 20
        configuration.idleSeconds = idleSeconds
        configuration.bodySeconds = bodySeconds
        // The event loops and Swift's task pool start a thread per core each, and trap (or wait
        // forever) when one is refused: check there is room first.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        do { try Threads.checkAvailable(Threads.count + 2 * cores + 1) } catch { throw CommandError("serve: \(error)") }
        let server = Server(service: service, configuration: configuration)
        let host = self.host
        // The command line is synchronous: the server runs as a task and this thread waits for it.
        let finished = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        Task {
            do {
                try await server.run { port in
                    print("mm serve: listening on http://\(host.contains(":") ? "[\(host)]" : host):\(port)/")
                    fflush(stdout)
                }
            } catch { failure = error }
            finished.signal()
        }
        finished.wait()
        if let failure { throw CommandError("serve on \(host):\(port): \(failure)") }
        warn("mm serve: stopped")
    }
}
