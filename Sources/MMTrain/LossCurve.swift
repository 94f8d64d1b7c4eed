import Foundation

/// A self-contained SVG of training (and validation) loss against step.
enum LossCurve {
    static func svg(train: [(step: Int, loss: Double)], validation: [(step: Int, loss: Double)]) -> String {
        let (w, h, pad) = (720.0, 400.0, 50.0)
        let all = train + validation
        guard let maxStep = all.map(\.step).max(), maxStep > 0,
            let lo = all.map(\.loss).min(), let hi = all.map(\.loss).max()
        else {
            return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"400\"/>"
        }
        let span = max(hi - lo, 1e-9)
        func x(_ s: Int) -> Double { pad + (w - 2 * pad) * Double(s) / Double(maxStep) }
        func y(_ l: Double) -> Double { h - pad - (h - 2 * pad) * (l - lo) / span }
        func line(_ pts: [(step: Int, loss: Double)], _ colour: String) -> String {
            let p = pts.map { String(format: "%.1f,%.1f", x($0.step), y($0.loss)) }.joined(separator: " ")
            return "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\" points=\"\(p)\"/>"
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<line x1=\"\(pad)\" y1=\"\(h - pad)\" x2=\"\(w - pad)\" y2=\"\(h - pad)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(pad)\" y1=\"\(pad)\" x2=\"\(pad)\" y2=\"\(h - pad)\" stroke=\"black\"/>\n"
        for i in 0...4 {
            let l = lo + span * Double(i) / 4
            s += String(format: "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", pad - 4, y(l) + 4, l)
        }
        s += "<text x=\"\(w - pad)\" y=\"\(h - pad + 20)\" text-anchor=\"end\">step \(maxStep)</text>\n"
        s += "<text x=\"\(pad)\" y=\"\(pad - 10)\">loss — <tspan fill=\"#1f77b4\">train</tspan>"
        s += validation.isEmpty ? "" : " · <tspan fill=\"#d62728\">validation</tspan>"
        s += "</text>\n" + line(train, "#1f77b4") + "\n"
        if !validation.isEmpty { s += line(validation, "#d62728") + "\n" }
        return s + "</svg>\n"
    }
}
