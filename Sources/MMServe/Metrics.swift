import Foundation

/// Request counts and latency histograms per route and status, written in Prometheus's text
/// exposition format. Routes are a fixed set of names (thumbnails are one route), so a client
/// cannot grow the label set.
final class Metrics: @unchecked Sendable {
    /// Upper bounds of the latency buckets, seconds.
    static let buckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    private struct Histogram {
        var counts = [Int](repeating: 0, count: Metrics.buckets.count)
        var sum = 0.0
        var count = 0
    }

    private let lock = NSLock()
    private var requests: [String: [Int: Int]] = [:]
    private var latency: [String: Histogram] = [:]

    func record(route: String, status: Int, seconds: Double) {
        lock.withLock {
            requests[route, default: [:]][status, default: 0] += 1
            var h = latency[route] ?? Histogram()
            for (i, bound) in Self.buckets.enumerated() where seconds <= bound { h.counts[i] += 1 }
            h.sum += seconds
            h.count += 1
            latency[route] = h
        }
    }

    /// The exposition text; `gauges` are added as they are (name → value, with help text).
    func text(gauges: [(name: String, help: String, labels: String, value: Double)]) -> String {
        lock.withLock {
            var out = "# HELP mm_http_requests_total HTTP requests by route and status.\n# TYPE mm_http_requests_total counter\n"
            for route in requests.keys.sorted() {
                for (status, n) in requests[route]!.sorted(by: { $0.key < $1.key }) {
                    out += "mm_http_requests_total{route=\"\(route)\",status=\"\(status)\"} \(n)\n"
                }
            }
            out +=
                "# HELP mm_http_request_duration_seconds Time from request to response, by route.\n# TYPE mm_http_request_duration_seconds histogram\n"
            for route in latency.keys.sorted() {
                let h = latency[route]!
                for (i, bound) in Self.buckets.enumerated() {
                    out += "mm_http_request_duration_seconds_bucket{route=\"\(route)\",le=\"\(bound)\"} \(h.counts[i])\n"
                }
                out += "mm_http_request_duration_seconds_bucket{route=\"\(route)\",le=\"+Inf\"} \(h.count)\n"
                out += "mm_http_request_duration_seconds_sum{route=\"\(route)\"} \(h.sum)\n"
                out += "mm_http_request_duration_seconds_count{route=\"\(route)\"} \(h.count)\n"
            }
            var seen = Set<String>()
            for g in gauges {
                if seen.insert(g.name).inserted { out += "# HELP \(g.name) \(g.help)\n# TYPE \(g.name) gauge\n" }
                out += "\(g.name)\(g.labels.isEmpty ? "" : "{\(g.labels)}") \(g.value)\n"
            }
            return out
        }
    }
}
