// swift-tools-version:5.9
//
// EdgeshipModelDownloader: download, verify and swap the models edgeship publishes
// (docs/ios.md). Not compiled on the project's machines (no Swift toolchain there): see README.md.
import PackageDescription

let package = Package(
    name: "EdgeshipModelDownloader",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "EdgeshipModelDownloader", targets: ["EdgeshipModelDownloader"]),
    ],
    dependencies: [
        .package(url: "https://github.com/firebase/firebase-ios-sdk.git", "11.0.0" ..< "13.0.0"),
    ],
    targets: [
        // Pure logic, no Firebase: the Firestore field contract, record decoding, release
        // selection (with the reasons it skips releases), integrity checks, the on-disk store.
        .target(name: "EdgeshipModelCore"),
        // The Firebase-backed downloader apps use (re-exports EdgeshipModelCore).
        .target(
            name: "EdgeshipModelDownloader",
            dependencies: [
                "EdgeshipModelCore",
                .product(name: "FirebaseCore", package: "firebase-ios-sdk"),
                .product(name: "FirebaseAuth", package: "firebase-ios-sdk"),
                .product(name: "FirebaseAppCheck", package: "firebase-ios-sdk"),
                .product(name: "FirebaseFirestore", package: "firebase-ios-sdk"),
                .product(name: "FirebaseStorage", package: "firebase-ios-sdk"),
            ]
        ),
        .testTarget(name: "EdgeshipModelCoreTests", dependencies: ["EdgeshipModelCore"]),
    ]
)
