// swift-tools-version:6.0
import PackageDescription

// A program that trains a few steps with mm's library API, and embeds and classifies an image
// with the result: the packaging check that mm's products work from another package.
let package = Package(
    name: "TrainFromSwift",
    // Named, since a path dependency is otherwise known by its folder's name.
    dependencies: [.package(name: "mm", path: "../..")],
    targets: [
        .executableTarget(
            name: "TrainFromSwift",
            dependencies: [
                .product(name: "MMTrain", package: "mm"),
                .product(name: "MMEval", package: "mm"),
                .product(name: "MMCLIP", package: "mm"),
                .product(name: "MMData", package: "mm"),
                .product(name: "MMImage", package: "mm"),
                .product(name: "MMTokenizer", package: "mm")
            ])
    ],
    swiftLanguageModes: [.v5]
)
