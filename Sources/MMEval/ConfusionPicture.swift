import Foundation

extension ZeroShotReport {
    /// Classes up to which the picture names every row and column; beyond, names would overlap
    /// (the CSV has them).
    public static let labelledClassLimit = 100

    /// The confusion matrix as a self-contained SVG heat map: rows are true classes, columns
    /// predicted ones, a cell's darkness is its share of the row (so rare classes show as
    /// clearly as common ones; any non-empty cell at least 15 %). Only non-empty cells are drawn, so 1,000 classes stay a small
    /// file; cells shrink to 1 px and names are left out beyond `labelledClassLimit` classes.
    public var confusionSVG: String {
        let c = classes.count
        let labelled = c <= Self.labelledClassLimit
        let cell = max(1, min(24, 800 / max(c, 1)))
        let font = max(6, min(12, cell - 1))
        let longest = labelled ? classes.map(\.name.count).max() ?? 0 : 0
        let margin = labelled ? 10 + Int((Double(longest * font) * 0.62).rounded(.up)) : 10
        let (left, top) = (margin, 30 + margin)
        let side = c * cell
        let (width, height) = (left + side + 20, top + side + 20)

        var s =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"\(font)\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s +=
            "<text x=\"\(left)\" y=\"16\" font-size=\"12\">confusion: \(count) samples, \(c) classes; rows true, columns predicted; shade = share of the row"
        s += labelled ? "" : " (class names in the CSV)"
        s += "</text>\n"
        s += "<rect class=\"frame\" x=\"\(left)\" y=\"\(top)\" width=\"\(side)\" height=\"\(side)\" fill=\"none\" stroke=\"#999\"/>\n"
        for (t, row) in confusion.enumerated() {
            let total = row.reduce(0, +)
            for (p, n) in row.enumerated() where n > 0 {
                // White → dark blue by share of the row, from 15 % so that a single sample among
                // many (or a 1-px cell) stays visible; a good model shows a dark diagonal.
                let share = 0.15 + 0.85 * Double(n) / Double(total)
                let shade = { (from: Double, to: Double) in Int((from + (to - from) * share).rounded()) }
                let colour = String(format: "#%02x%02x%02x", shade(235, 8), shade(242, 48), shade(250, 107))
                s += "<rect class=\"cell\" x=\"\(left + p * cell)\" y=\"\(top + t * cell)\" width=\"\(cell)\" height=\"\(cell)\" fill=\"\(colour)\">"
                if labelled { s += "<title>\(Self.escaped(classes[t].name)) → \(Self.escaped(classes[p].name)): \(n)</title>" }
                s += "</rect>\n"
            }
        }
        if labelled {
            for (i, result) in classes.enumerated() {
                let name = Self.escaped(result.name)
                let middle = String(format: "%.1f", Double(i * cell) + Double(cell) / 2 + Double(font) * 0.35)
                s += "<text class=\"row\" x=\"\(left - 4)\" y=\"\(top)\" dy=\"\(middle)\" text-anchor=\"end\">\(name)</text>\n"
                s += "<text class=\"column\" transform=\"translate(\(left) \(top - 4)) rotate(-90)\" dy=\"\(middle)\">\(name)</text>\n"
            }
        }
        return s + "</svg>\n"
    }

    /// Text made safe for SVG element content and attribute values.
    static func escaped(_ text: String) -> String {
        var out = ""
        for ch in text {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.append(ch)
            }
        }
        return out
    }
}
