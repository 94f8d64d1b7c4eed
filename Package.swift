// swift-tools-version:6.0
import PackageDescription

// AVX2/FMA for the SIMD kernels: every machine mm targets has them.
// (Numeric kernels share raw buffers across worker threads by design; the Swift 5 language
// mode below keeps that explicit in the kernels instead of wrapping every pointer in a box.)
let optimise: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"], .when(configuration: .release))]

let package = Package(
    name: "mm",
    products: [
        .executable(name: "mm", targets: ["mm"]),
        .library(name: "MMTensor", targets: ["MMTensor"]),
        .library(name: "MMNN", targets: ["MMNN"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),

        // Tensor core and neural-network layers
        .target(name: "MMTensor", dependencies: ["CBLAS"], swiftSettings: optimise),
        .target(name: "MMNN", dependencies: ["MMTensor"], swiftSettings: optimise),

        // Command line
        .target(name: "MMCommands", dependencies: [
            "MMTensor", "MMNN",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "mm", dependencies: ["MMCommands"]),

        // Tests
        .testTarget(name: "MMTensorTests", dependencies: ["MMTensor"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MMNNTests", dependencies: ["MMNN"], resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
