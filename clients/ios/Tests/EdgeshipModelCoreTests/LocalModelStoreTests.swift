import XCTest
@testable import EdgeshipModelCore

final class LocalModelStoreTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: root)
    }

    private func install(_ store: LocalModelStore, version: String, bytes: Data) throws {
        let file = try store.newStagingFile(name: "detector", channel: "stable", version: version)
        try bytes.write(to: file)
        let sha = try Integrity.sha256Hex(of: file)
        let release = try Release(record: releaseRecord(version: version, size: Int64(bytes.count), sha256: sha),
                                  documentID: "stable-\(version)")
        try Integrity.verify(file, size: release.modelFile.size, sha256: release.modelFile.sha256)
        try store.install(verifiedFile: file, release: release, name: "detector", channel: "stable")
    }

    func testSwapKeepsTheLastGoodAndFallsBackToItWhenTheCurrentIsDamaged() throws {
        let store = try LocalModelStore(root: root)
        let v1 = "20261101t000000000000z-000001", v2 = "20261102t000000000000z-000002"
        let v3 = "20261103t000000000000z-000003"
        try install(store, version: v1, bytes: Data("one".utf8))
        try install(store, version: v2, bytes: Data("two".utf8))
        try install(store, version: v3, bytes: Data("three".utf8))
        let state = store.state(name: "detector", channel: "stable")
        XCTAssertEqual(state.current?.version, v3)
        XCTAssertEqual(state.previous?.version, v2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store.modelURL(name: "detector", channel: "stable", version: v1).path))

        try Data("tampered".utf8).write(to: store.modelURL(name: "detector", channel: "stable", version: v3))
        let usable = try XCTUnwrap(store.usableModel(name: "detector", channel: "stable", verifyHash: true))
        XCTAssertEqual(usable.installed.version, v2)
        XCTAssertEqual(usable.source, .lastGood)
        XCTAssertEqual(store.state(name: "detector", channel: "stable").current?.version, v2)
        XCTAssertEqual(store.list().map(\.version), [v2])

        try store.delete(name: "detector", channel: nil)
        XCTAssertTrue(store.list().isEmpty)
    }

    func testIntegrityNamesSizeAndHashMismatches() throws {
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let file = root.appendingPathComponent("m.tflite")
        try Data("abc".utf8).write(to: file)
        XCTAssertEqual(try Integrity.sha256Hex(of: file),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertThrowsError(try Integrity.verify(file, size: 4, sha256: "00")) {
            XCTAssertEqual($0 as? IntegrityError, .size(expected: 4, actual: 3))
        }
    }

    func testNamesThatWouldEscapeTheStoreAreRefused() {
        XCTAssertThrowsError(try LocalModelStore.checkNames(name: "../x", channel: "stable"))
        XCTAssertThrowsError(try LocalModelStore.checkNames(name: "detector", channel: "Stable"))
        XCTAssertNoThrow(try LocalModelStore.checkNames(name: "edgeship-detector", channel: "stable"))
    }
}
