import XCTest
@testable import EdgeshipModelCore

final class ReleaseTests: XCTestCase {
    func testDecodesARecordAsTheFunctionWritesIt() throws {
        let release = try Release(record: releaseRecord(), documentID: "stable-20261124t120305123456z-3f9a1c")
        XCTAssertEqual(release.version, "20261124t120305123456z-3f9a1c")
        XCTAssertEqual(release.modelFile.size, 4)
        XCTAssertEqual(release.modelObjectPath, "models/detector/20261124t120305123456z-3f9a1c/model.tflite")
        XCTAssertEqual(release.input.shape, [1, 160, 160, 3])
        XCTAssertEqual(release.input.zeroPoint, 128)
        XCTAssertEqual(release.outputs.scores.index, 3)
        XCTAssertNil(release.parentVersion)
        XCTAssertEqual(release.minAppVersion, "1.0")
    }

    func testNamesTheFieldThatIsMissingOrMistyped() {
        var record = releaseRecord()
        record["model_file"] = ["path": "model.tflite", "sha256": String(repeating: "a", count: 64)]
        XCTAssertThrowsError(try Release(record: record, documentID: "stable-20261124t120305123456z-3f9a1c")) {
            XCTAssertTrue("\($0)".contains("model_file.size"), "\($0)")
        }
        record = releaseRecord()
        record["labels"] = "circle"
        XCTAssertThrowsError(try Release(record: record, documentID: "stable-20261124t120305123456z-3f9a1c")) {
            guard case let .wrongType(_, field, expected, _)? = $0 as? RecordError else { return XCTFail("\($0)") }
            XCTAssertEqual(field, "labels")
            XCTAssertEqual(expected, .stringArray)
        }
    }

    func testRefusesAPrefixOutsideItsBucketAndABooleanForANumber() {
        var record = releaseRecord()
        record["prefix"] = "gs://other-bucket/models/detector/20261124t120305123456z-3f9a1c/"
        XCTAssertThrowsError(try Release(record: record, documentID: "stable-20261124t120305123456z-3f9a1c"))
        record = releaseRecord()
        record["model_file"] = (record["model_file"] as! [String: Any]).merging(["size": NSNumber(value: true)]) { $1 }
        XCTAssertThrowsError(try Release(record: record, documentID: "stable-20261124t120305123456z-3f9a1c"))
    }

    func testAppVersionsCompareNumerically() {
        XCTAssertLessThan(AppVersion("1.4")!, AppVersion("1.10")!)
        XCTAssertEqual(AppVersion("1.2"), AppVersion("1.2.0"))
        XCTAssertNil(AppVersion("1.2.3.4"))
        XCTAssertNil(AppVersion("1.x"))
        XCTAssertNil(AppVersion(""))
    }
}
