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
        .library(name: "MMFoundation", targets: ["MMFoundation"]),
        .library(name: "MMTensor", targets: ["MMTensor"]),
        .library(name: "MMNN", targets: ["MMNN"]),
        .library(name: "MMCLIP", targets: ["MMCLIP"]),
        .library(name: "MMImage", targets: ["MMImage"]),
        .library(name: "MMTokenizer", targets: ["MMTokenizer"]),
        .library(name: "MMData", targets: ["MMData"]),
        .library(name: "MMEval", targets: ["MMEval"]),
        .library(name: "MMTrain", targets: ["MMTrain"]),
        .library(name: "MMDistributed", targets: ["MMDistributed"]),
        .library(name: "MMDistributedMPI", targets: ["MMDistributedMPI"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2")
    ],
    targets: [
        // System libraries
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),

        // The shared base: seeded streams, hashing, atomic writes and file reading, text and lines,
        // the thread count, resource lookup
        .target(name: "MMFoundation", swiftSettings: optimise),

        // Tensor core and neural-network layers
        .target(name: "MMTensor", dependencies: ["MMFoundation", "CBLAS"], swiftSettings: optimise),
        .target(name: "MMNN", dependencies: ["MMTensor"], swiftSettings: optimise),

        // The two towers and the CLIP model
        .target(name: "MMVision", dependencies: ["MMNN"], swiftSettings: optimise),
        .target(name: "MMText", dependencies: ["MMNN"], swiftSettings: optimise),
        // (with the image transform and tokenizer a checkpoint's preprocessing and prompts need)
        .target(
            name: "MMCLIP", dependencies: ["MMVision", "MMText", "MMImage", "MMTokenizer"], resources: [.copy("configs")],
            swiftSettings: optimise),
        // faiss (Debian's static libfaiss, OpenMP) behind mm's own extern "C" shim: Debian ships no compiled C API
        .target(
            name: "CFaiss", linkerSettings: [.linkedLibrary("faiss"), .linkedLibrary("openblas"), .linkedLibrary("gomp"), .linkedLibrary("stdc++")]),
        // The scan of 4-bit product-quantised codes (pq-scan): AVX2 byte shuffles chosen at run time, a portable twin
        .target(name: "CFastScan"),
        .target(
            name: "MMEval", dependencies: ["MMFoundation", "MMCLIP", "MMData", "CFaiss", "CFastScan"], resources: [.copy("templates")],
            swiftSettings: optimise),
        .target(name: "MMTrain", dependencies: ["MMCLIP", "MMData", "MMDistributed"], swiftSettings: optimise),

        // Data parallelism over any process group (threads in-process); Open MPI as one transport
        // (handle macros behind an inline C shim)
        .target(name: "MMDistributed", dependencies: ["MMTensor"], swiftSettings: optimise),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        .target(name: "MMDistributedMPI", dependencies: ["CMPI", "MMFoundation", "MMDistributed"], swiftSettings: optimise),

        // Image decoding (libjpeg-turbo, libpng behind setjmp shims, libwebp) and open_clip's preprocessing
        .target(name: "CJPEG", linkerSettings: [.linkedLibrary("jpeg")]),
        .target(name: "CPNG", linkerSettings: [.linkedLibrary("png16")]),
        .target(name: "CWebP", linkerSettings: [.linkedLibrary("webpdemux"), .linkedLibrary("webp")]),
        .target(name: "MMImage", dependencies: ["MMFoundation", "CJPEG", "CPNG", "CWebP", "MMTensor"], swiftSettings: optimise),

        // CLIP tokenizer: ICU (behind a C shim) for normalisation and case, zlib for the gzipped vocabulary
        .target(name: "CICU", linkerSettings: [.linkedLibrary("icuuc")]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "MMTokenizer", dependencies: ["MMFoundation", "CICU", "CZlib"], resources: [.copy("vocab")], swiftSettings: optimise),

        // Manifests, seeded epoch order, the prefetching image–caption loader, Parquet (zlib for its GZIP pages)
        .target(name: "MMData", dependencies: ["MMImage", "MMTokenizer", "CZlib"], swiftSettings: optimise),

        // The retrieval service (Hummingbird): clip-retrieval's API, mm's API, the web page
        .target(
            name: "MMServe",
            dependencies: [
                "MMEval",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log")
            ], resources: [.copy("page")], swiftSettings: optimise),

        // Command line
        .target(
            name: "MMCommands",
            dependencies: [
                "MMTensor", "MMNN",
                "MMImage",
                "MMTokenizer",
                "MMData",
                "MMCLIP", "MMEval", "MMTrain", "MMDistributed", "MMDistributedMPI", "MMServe",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser")
            ]),
        .executableTarget(name: "mm", dependencies: ["MMCommands"]),
        .executableTarget(name: "mm-bench", dependencies: ["MMCLIP"], path: "Sources/MMBench", swiftSettings: optimise),
        .executableTarget(name: "mm-data-bench", dependencies: ["MMData"], path: "Sources/MMDataBench", swiftSettings: optimise),

        // Tests, with shared helpers (fixture loading, tolerances, gradient checks)
        .target(name: "MMTestSupport", dependencies: ["MMTensor"], path: "Tests/Support"),
        .testTarget(name: "MMFoundationTests", dependencies: ["MMFoundation"]),
        .testTarget(name: "MMTensorTests", dependencies: ["MMTensor", "MMTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MMNNTests", dependencies: ["MMNN", "MMTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MMCLIPTests", dependencies: ["MMCLIP", "MMTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MMTrainTests", dependencies: ["MMTrain", "MMData", "MMTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MMImageTests", dependencies: ["MMImage"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MMTokenizerTests", dependencies: ["MMTokenizer"], resources: [.copy("Fixtures")]),
        .testTarget(name: "MMDataTests", dependencies: ["MMData", "MMImage", "MMTokenizer", "MMTensor"], exclude: ["Fixtures"]),
        .testTarget(
            name: "MMEvalTests", dependencies: ["MMEval", "MMCLIP", "MMData", "MMImage", "MMTestSupport", "CFastScan"], exclude: ["Fixtures"]),
        .testTarget(name: "MMDistributedTests", dependencies: ["MMDistributed", "MMTensor", "MMTestSupport"]),
        .testTarget(name: "MMServeTests", dependencies: ["MMServe", "MMEval", "MMTestSupport"])
    ],
    swiftLanguageModes: [.v5]
)
