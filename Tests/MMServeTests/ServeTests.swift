import Foundation
import MMServe
import MMTestSupport
import Testing

/// `mm serve` end to end: the real binary on 127.0.0.1 and a free port, a model trained in the
/// setup, real clients (clip-retrieval's ClipClient, headless Chromium, raw sockets).
@Suite(.serialized) struct ServeTests {
    static let testImage = "datasets/shapes/images/test/000000.jpg"  // a purple heart (test_labels.tsv)

    /// clip-retrieval's own client queries by text, by image and by embedding. Asserted: the text
    /// query's top 10 are mostly red circles (chance: 10 in 64; seen: 9/10, the tenth a red
    /// square) and all red but at most two, and the image query finds its
    /// own image first (cosine 1); the embedding of a text (from /embed) gives the text query's
    /// results exactly; the text modality answers with class names; metadata (caption,
    /// image_path) and the base64 file come with the results.
    @Test(.enabled(if: ReferenceVenv.available, Comment(rawValue: ReferenceVenv.missingReason)))
    func clipRetrievalClientQueriesByTextImageAndEmbedding() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let text = "red circle"
        let embedded = try HTTP.post(server.port, "/embed", json: ["texts": [text]])
        #expect(embedded.status == 200, "\(embedded.text)")
        let vector = try #require(((try embedded.json()) as? [String: Any])?["embeddings"] as? [[Double]]).first!
        let vectorFile = Fixture.folder + "/embedding.json"
        try JSONSerialization.data(withJSONObject: vector).write(to: URL(fileURLWithPath: vectorFile))
        let run = try ReferenceVenv.run([
            "tools/serve/clip_client_query.py", "http://127.0.0.1:\(server.port)", "gallery", text,
            Fixture.root.path + "/" + Self.testImage, vectorFile
        ])
        try #require(run.status == 0, "\(run.output)")
        let answers = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: [[String: Any]]])
        let byText = try #require(answers["text"]), byImage = try #require(answers["image"]), byEmbedding = try #require(answers["embedding"])
        #expect(byText.count == 10 && byImage.count == 10)
        let captions = byText.map { ($0["caption"] as? String ?? "").lowercased() }
        let red = captions.filter { $0.contains("red") }.count
        print("ClipClient text '\(text)': \(red)/10 red, \(captions.filter { $0.contains("circle") }.count)/10 circles: \(captions)")
        #expect(red >= 8, "top 10 for '\(text)' should be red: \(captions)")
        #expect(
            captions.filter { $0.contains("red") && $0.contains("circle") }.count >= 6,
            "top 10 for '\(text)' should be mostly red circles: \(captions)")
        #expect(byEmbedding.map { $0["id"] as? Int } == byText.map { $0["id"] as? Int }, "embedding_input of the same text gives the same results")
        let first = try #require(byImage.first)
        #expect((first["image_path"] as? String)?.hasSuffix(Self.testImage) == true, "\(first)")
        #expect(abs((first["similarity"] as? Double ?? 0) - 1) < 1e-4)
        #expect((first["image_bytes"] as? Int ?? 0) > 100, "the result carries its file as base64")
        let similarities = byText.compactMap { $0["similarity"] as? Double }
        #expect(similarities == similarities.sorted(by: >), "best first")
        let texts = try #require(answers["image_to_text"])
        #expect(texts.count == 5 && texts.allSatisfy { $0["kind"] as? String == "text" })
        // deduplicate drops results within cosine 0.94 of an earlier one: never more, never a new one.
        let deduplicated = try #require(answers["image_to_text_deduplicated"]).compactMap { $0["id"] as? Int }
        #expect(!deduplicated.isEmpty && deduplicated.count <= 5 && deduplicated.first == texts.first?["id"] as? Int)
        print("ClipClient image→text for a purple heart: \(texts.map { $0["caption"] as? String ?? "" })")
    }

    /// The page in a real browser: headless Chromium loads it, a query is typed and entered, the
    /// grid shows results with loaded thumbnails, captions and scores; clicking a result searches
    /// by it (the clicked image comes first). docs/serve-page.png is its screenshot.
    @Test(.enabled(if: ReferenceVenv.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"), "needs Debian's chromium"))
    func pageShowsResultsInHeadlessChromium() throws {
        let server = try RunningServer()
        defer { server.stop() }
        let shot = Fixture.folder + "/page.png"
        let run = try ReferenceVenv.run(["tools/serve/page_check.py", "http://127.0.0.1:\(server.port)/", "red circle", "--screenshot", shot])
        try #require(run.status == 0, "\(run.output)")
        let page = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [String: [String: Any]])
        let typed = try #require(page["typed"]?["results"] as? [[String: Any]])
        #expect(typed.count == 24)
        #expect(typed.allSatisfy { $0["loaded"] as? Bool == true }, "every thumbnail loaded")
        #expect(typed.allSatisfy { ($0["caption"] as? String)?.isEmpty == false && ($0["score"] as? String)?.contains("id ") == true })
        #expect((page["typed"]?["status"] as? String)?.contains("results for “red circle”") == true)
        let clicked = try #require(page["clicked"]?["results"] as? [[String: Any]])
        #expect(clicked.first?["id"] as? Int == typed.first?["id"] as? Int, "searching by a result finds it first")
        // MM_UPDATE_SCREENSHOT=1 refreshes the committed picture.
        let docs = Fixture.root.path + "/docs/serve-page.png"
        if ProcessInfo.processInfo.environment["MM_UPDATE_SCREENSHOT"] == "1" {
            try? FileManager.default.removeItem(atPath: docs)
            try FileManager.default.copyItem(atPath: shot, toPath: docs)
        }
    }

    /// Hostile requests each get a 4xx/413 with a JSON one-line error, and the server keeps serving.
    @Test func hostileRequestsAreRefusedAndServingContinues() throws {
        let server = try RunningServer(["--max-body-mb", "8"])
        defer { server.stop() }
        let p = server.port
        func expect(_ reply: HTTP.Reply, _ status: Int, _ what: String) {
            #expect(reply.status == status, "\(what): \(reply.status) \(reply.text.prefix(200))")
            if status != 200, let object = try? reply.json() as? [String: Any] {
                #expect(object["status"] as? Int == status && (object["error"] as? String)?.contains("\n") == false, "\(what): \(reply.text)")
            } else if status != 200 {
                Issue.record("\(what): not a JSON error: \(reply.text.prefix(200))")
            }
        }
        expect(try HTTP.request(p, "POST", "/knn-service", body: Array("{\"text\": ".utf8)), 400, "malformed JSON")
        expect(try HTTP.request(p, "POST", "/search", body: Array("[1, 2]".utf8)), 400, "JSON that is not an object")
        expect(try HTTP.request(p, "POST", "/search", body: []), 400, "empty body")
        expect(try HTTP.post(p, "/search", json: ["text": 5]), 400, "wrong type")
        expect(try HTTP.post(p, "/search", json: ["image": "bm90IGFuIGltYWdlIGF0IGFsbA=="]), 415, "base64 that is not an image")
        expect(try HTTP.post(p, "/search", json: ["image": "%%%not base64%%%"]), 400, "not base64")
        let fakeJPEG = Data([0xFF, 0xD8, 0xFF, 0xE0] + [UInt8](repeating: 7, count: 200)).base64EncodedString()
        expect(try HTTP.post(p, "/search", json: ["image": fakeJPEG]), 400, "a JPEG header over garbage")
        expect(
            try HTTP.post(p, "/knn-service", json: ["text": "x", "num_images": 100_000_000, "indice_name": "gallery", "modality": "image"]), 400,
            "huge num_images")
        expect(
            try HTTP.post(p, "/knn-service", json: ["text": "x", "num_images": 10, "num_result_ids": 1e12, "indice_name": "gallery"]), 400,
            "huge num_result_ids")
        expect(try HTTP.post(p, "/search", json: ["text": "x", "k": -3]), 400, "negative k")
        expect(try HTTP.post(p, "/search", json: ["text": "x", "k": 2.5]), 400, "fractional k")
        expect(
            try HTTP.post(p, "/knn-service", json: ["text": "x", "num_images": 5, "indice_name": "nope", "modality": "image"]), 404, "unknown index")
        expect(try HTTP.post(p, "/search", json: ["embedding": [1, 2, 3]]), 400, "embedding of the wrong dimension")
        expect(try HTTP.post(p, "/search", json: ["text": "x", "image": "y"]), 400, "two queries")
        expect(
            try HTTP.post(p, "/knn-service", json: ["image_url": "http://127.0.0.1:1/x.jpg", "num_images": 5, "indice_name": "gallery"]), 403,
            "image_url without --allow-url-fetch")
        expect(try HTTP.post(p, "/zeroshot", json: ["labels": ["a"], "templates": ["no placeholder"], "image": "x"]), 400, "template without {}")
        expect(try HTTP.post(p, "/metadata", json: ["ids": [123_456_789], "indice_name": "gallery"]), 404, "unknown id")
        for path in [
            "/thumbnail/gallery/..%2F..%2F..%2Fetc%2Fpasswd", "/thumbnail/gallery/-1", "/thumbnail/..%2Fgallery/0",
            "/thumbnail/gallery/0/../../../etc/passwd", "/page/..%2F..%2FPackage.swift", "/page/../../../../etc/passwd",
            "/thumbnail/gallery/1e3", "/../../etc/passwd"
        ] {
            let reply = try HTTP.request(p, "GET", path)
            #expect((400..<500).contains(reply.status), "\(path): \(reply.status)")
            #expect(!reply.text.contains("root:"), "\(path) leaked a file")
        }
        // A text row has no file to serve.
        let textRow = try HTTP.post(p, "/search", json: ["text": "red circle", "k": 1, "modality": "text"])
        let textID = try #require(((try textRow.json() as? [String: Any])?["results"] as? [[String: Any]])?.first?["id"] as? Int)
        expect(try HTTP.request(p, "GET", "/thumbnail/gallery/\(textID)"), 404, "thumbnail of a text row")

        // 100 MB: refused from its declared length, and streamed without one.
        let big = [UInt8](repeating: 0x20, count: 100 << 20)
        expect(try HTTP.request(p, "POST", "/search", body: big), 413, "100 MB body")
        let fd = try HTTP.connect(p)
        HTTP.send(fd, Array("POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
        var chunked: HTTP.Reply?
        for _ in 0..<100 {
            guard HTTP.send(fd, Array("100000\r\n".utf8) + [UInt8](repeating: 0x20, count: 1 << 20) + Array("\r\n".utf8)) else { break }
        }
        chunked = HTTP.receive(fd)
        close(fd)
        #expect(chunked?.status == 413, "100 MB chunked body: \(chunked?.status ?? -1)")

        // Still serving, and the refusals were counted.
        let ok = try HTTP.post(p, "/search", json: ["text": "red circle", "k": 3])
        let okResults = (try ok.json() as? [String: Any])?["results"] as? [Any]
        #expect(ok.status == 200 && okResults?.count == 3)
        #expect(try HTTP.request(p, "GET", "/health").status == 200)
        let metrics = try HTTP.request(p, "GET", "/metrics").text
        #expect(metrics.contains("mm_http_requests_total{route=\"/search\",status=\"400\"}"), "\(metrics.prefix(500))")
        #expect(metrics.contains("mm_http_request_duration_seconds_bucket{route=\"/search\",le=\"+Inf\"}"))
        #expect(server.stop() == 0, "graceful exit: \(server.logText.suffix(500))")
    }

    /// Slow clients cannot hold the server: a request whose headers trickle in (slowloris) is
    /// closed after the idle timeout, a body that trickles in past the limit gets 408, and others
    /// are served meanwhile.
    @Test func slowClientsTimeOut() throws {
        let server = try RunningServer(["--idle-seconds", "2", "--body-seconds", "3"])
        defer { server.stop() }
        let p = server.port
        var loris: [Int32] = []
        for _ in 0..<20 {
            let fd = try HTTP.connect(p, timeout: 15)
            HTTP.send(fd, Array("GET /health HTTP/1.1\r\nHost: x\r\n".utf8))
            loris.append(fd)
        }
        let started = Date()
        // Keep trickling header bytes; the server must close each connection anyway.
        var closed = 0
        for fd in loris {
            var buffer = [UInt8](repeating: 0, count: 256)
            while Date().timeIntervalSince(started) < 12 {
                HTTP.send(fd, Array("X-a: b\r\n".utf8))
                var tv = timeval(tv_sec: 0, tv_usec: 500_000)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                let n = recv(fd, &buffer, buffer.count, 0)
                if n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) || n > 0 { closed += 1; break }
            }
            close(fd)
        }
        #expect(closed == 20, "\(closed) of 20 slowloris connections closed by the server")
        // A body that arrives too slowly.
        let fd = try HTTP.connect(p, timeout: 15)
        HTTP.send(fd, Array("POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{".utf8))
        var slow: HTTP.Reply?
        for _ in 0..<12 {
            guard HTTP.send(fd, Array(" ".utf8)) else { break }
            var tv = timeval(tv_sec: 0, tv_usec: 500_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            if let r = HTTP.receive(fd) { slow = r; break }
        }
        close(fd)
        #expect(slow?.status == 408, "slow body: \(slow?.status ?? -1)")
        #expect(try HTTP.request(p, "GET", "/health").status == 200)
    }

    /// mm's own API: /search by text, by image and by a row id; /embed gives unit vectors;
    /// /zeroshot gives probabilities that sum to 1, best first; several indexes by name (an
    /// indices_paths.json as clip-retrieval writes it); /indices-list, /config.json, /metadata,
    /// thumbnails of indexed files, CORS.
    @Test func mmAPIAndSeveralIndexes() throws {
        let gallery = try Fixture.gallery.get()
        let paths = Fixture.folder + "/indices_paths.json"
        try JSONSerialization.data(withJSONObject: ["second": ["indice_folder": gallery]]).write(to: URL(fileURLWithPath: paths))
        let server = try RunningServer(["--indices-paths", paths])
        defer { server.stop() }
        let p = server.port
        #expect(try HTTP.request(p, "GET", "/indices-list").json() as? [String] == ["gallery", "second"])
        let config = try HTTP.request(p, "GET", "/config.json").json() as? [String: String]
        #expect(config?["defaultIndex"] == "gallery" && config?["defaultBackend"] == "http://127.0.0.1:\(p)")

        let image = try Data(contentsOf: Fixture.root.appendingPathComponent(Self.testImage)).base64EncodedString()
        let byImage = try HTTP.post(p, "/search", json: ["image": image, "k": 5, "index": "second", "modality": "image"])
        let results = try #require((try byImage.json() as? [String: Any])?["results"] as? [[String: Any]])
        #expect((results.first?["image_path"] as? String)?.hasSuffix(Self.testImage) == true)
        let id = try #require(results.first?["id"] as? Int)
        let byID = try #require((try HTTP.post(p, "/search", json: ["id": id, "k": 5]).json() as? [String: Any])?["results"] as? [[String: Any]])
        #expect(byID.map { $0["id"] as? Int } == results.map { $0["id"] as? Int }, "searching by a row is searching by its image")

        let thumbnail = try HTTP.request(p, "GET", "/thumbnail/gallery/\(id)")
        #expect(thumbnail.status == 200 && thumbnail.headers.lowercased().contains("content-type: image/jpeg"))
        #expect(Data(thumbnail.body) == (try Data(contentsOf: Fixture.root.appendingPathComponent(Self.testImage))))

        let metadata = try #require(try HTTP.post(p, "/metadata", json: ["ids": [id], "indice_name": "gallery"]).json() as? [[String: Any]])
        #expect(metadata.first?["id"] as? Int == id && ((metadata.first?["metadata"] as? [String: Any])?["caption"] as? String)?.isEmpty == false)

        let embedded = try #require(try HTTP.post(p, "/embed", json: ["texts": ["a red circle", "a blue star"]]).json() as? [String: Any])
        let vectors = try #require(embedded["embeddings"] as? [[Double]])
        #expect(vectors.count == 2 && vectors.allSatisfy { abs($0.reduce(0) { $0 + $1 * $1 } - 1) < 1e-4 })
        let images = try #require(try HTTP.post(p, "/embed", json: ["images": [image]]).json() as? [String: Any])
        #expect((images["embeddings"] as? [[Double]])?.first?.count == vectors[0].count)

        let labels = ["purple heart", "red circle", "green square"]
        let zs = try #require(try HTTP.post(p, "/zeroshot", json: ["labels": labels, "image": image]).json() as? [String: Any])
        let predictions = try #require(zs["predictions"] as? [[String: Any]])
        let probabilities = predictions.compactMap { $0["probability"] as? Double }
        #expect(Set(predictions.compactMap { $0["label"] as? String }) == Set(labels))
        #expect(abs(probabilities.reduce(0, +) - 1) < 1e-5 && probabilities == probabilities.sorted(by: >))
        print("zero-shot of a purple heart: \(predictions)")

        let preflight = try HTTP.request(p, "OPTIONS", "/knn-service", headers: ["Origin: http://example.org", "Access-Control-Request-Method: POST"])
        #expect(preflight.headers.lowercased().contains("access-control-allow-origin: *"), "\(preflight.headers)")
        // Any Content-Type: the body is JSON regardless (clip-retrieval's front sends none).
        let form = try HTTP.request(
            p, "POST", "/knn-service", body: Array(#"{"text":"red circle","num_images":3,"indice_name":"gallery","modality":"image"}"#.utf8),
            headers: ["Content-Type: application/x-www-form-urlencoded"])
        let formResults = try form.json() as? [Any]
        #expect(form.status == 200 && formResults?.count == 3)
    }
}

/// `mm index` command-line behaviours of issue 16 (items 9 and 13), through the real binary.
@Suite struct IndexCommandTests {
    /// `mm index export g.mmi -o g.mmi` refuses to replace the index it reads.
    @Test func exportNeverReplacesTheIndex() throws {
        let gallery = try Fixture.gallery.get()
        let copy = Fixture.folder + "/export-self.mmi"
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: gallery, toPath: copy)
        let before = try Data(contentsOf: URL(fileURLWithPath: copy))
        for output in [copy, Fixture.folder + "/./export-self.mmi"] {
            let run = try Fixture.command([Fixture.mm, "index", "export", copy, "-o", output])
            #expect(run.status != 0 && run.output.contains("is the index being exported"), "\(run.output)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: copy)) == before)
    }

    /// `--batch-size 0` (and absurd sizes) is a usage error, never a trap.
    @Test func batchSizeIsValidated() throws {
        let checkpoint = try Fixture.model.get()
        for size in ["0", "-1", "1000000"] {
            let run = try Fixture.command([
                Fixture.mm, "index", "build", "-c", checkpoint, "datasets/shapes/images/test/000000.jpg",
                "--batch-size", size, "-o", Fixture.folder + "/never.mmi"
            ])
            #expect(run.status != 0 && run.status < 128 && run.output.contains("--batch-size"), "\(size): \(run.status) \(run.output)")
        }
    }
}

/// clip-retrieval's indices_paths.json, hostile: never waited on, read forever or half-understood.
@Suite struct IndicesFileTests {
    @Test func anIndicesFileThatIsNotAUsableObjectIsRefusedNamingIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mm-indices-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let fifo = dir.appendingPathComponent("fifo.json").path
        #expect(mkfifo(fifo, 0o600) == 0)
        let zero = dir.appendingPathComponent("zero.json").path
        #expect(symlink("/dev/zero", zero) == 0)
        let empty = dir.appendingPathComponent("empty.json").path
        try Data([0xFF, 0xFE, 0x7B, 0x00, 0x7D, 0x00]).write(to: URL(fileURLWithPath: empty))  // "{}" in UTF-16
        for path in [fifo, zero, empty] {
            #expect { _ = try IndexSpecs.parse(indicesFile: path) } throws: { "\($0)".contains(path) }
        }
        let good = dir.appendingPathComponent("good.json").path
        try Data(#"{"a": "x.mmi"}"#.utf8).write(to: URL(fileURLWithPath: good))
        #expect(try IndexSpecs.parse(indicesFile: good).map(\.name) == ["a"])
    }
}
