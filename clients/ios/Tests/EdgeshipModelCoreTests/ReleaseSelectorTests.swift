import XCTest
@testable import EdgeshipModelCore

final class ReleaseSelectorTests: XCTestCase {
    let v1 = "20261101t000000000000z-000001"
    let v2 = "20261102t000000000000z-000002"
    let v3 = "20261103t000000000000z-000003"
    let selector = ReleaseSelector()

    func testNewestReleaseThatThisAppCanRunAndWhyTheNewerOneWasSkipped() {
        let list = [candidate(releaseRecord(version: v3, minApp: "3.0")), candidate(releaseRecord(version: v2)),
                    candidate(releaseRecord(version: v1))]
        let plan = selector.plan(channel: .open, newestFirst: list, pinned: nil, installedVersion: nil,
                                 appVersion: "2.1", failures: [:])
        guard case let .install(targets) = plan.decision else { return XCTFail("\(plan)") }
        XCTAssertEqual(targets.map(\.version), [v2, v1])  // tried in this order
        XCTAssertEqual(plan.skipped, [SkippedRelease(version: v3, reason: .needsNewerApp(required: "3.0", running: "2.1"))])
    }

    func testNeverOlderThanWhatIsInstalled() {
        let list = [candidate(releaseRecord(version: v3, minApp: "9")), candidate(releaseRecord(version: v2)),
                    candidate(releaseRecord(version: v1))]
        let plan = selector.plan(channel: .open, newestFirst: list, pinned: nil, installedVersion: v2,
                                 appVersion: "2.0", failures: [:])
        XCTAssertEqual(plan.decision, .keep(reason: "no release newer than \(v2) can be installed by this app"))
        XCTAssertEqual(plan.skipped.map(\.version), [v3])
    }

    func testUnusableRecordsAndRepeatedFailuresAreSkippedWithTheirReason() {
        var broken = releaseRecord(version: v3)
        broken["bucket"] = nil
        let failures = [v2: FailureRecord(attempts: 3, lastError: "sha256 mismatch", lastAttempt: Date())]
        let plan = selector.plan(channel: .open,
                                 newestFirst: [candidate(broken), candidate(releaseRecord(version: v2)),
                                               candidate(releaseRecord(version: v1))],
                                 pinned: nil, installedVersion: nil, appVersion: "1.0", failures: failures)
        guard case let .install(targets) = plan.decision else { return XCTFail("\(plan)") }
        XCTAssertEqual(targets.map(\.version), [v1])
        XCTAssertEqual(plan.skipped.map(\.version), [v3, v2])
        XCTAssertTrue(plan.skipped[0].description.contains("bucket"))
        XCTAssertEqual(plan.skipped[1].reason, .failedBefore(attempts: 3, lastError: "sha256 mismatch"))
    }

    func testPausedAndPinned() {
        let paused = ChannelState(paused: true, pinnedVersion: nil, reason: "bad outputs", updatedBy: "ops")
        XCTAssertEqual(selector.plan(channel: paused, newestFirst: [candidate(releaseRecord(version: v3))], pinned: nil,
                                     installedVersion: v1, appVersion: "1.0", failures: [:]).decision,
                       .keep(reason: "channel paused by ops: bad outputs"))
        let pinned = ChannelState(paused: false, pinnedVersion: v1, reason: nil, updatedBy: nil)
        let plan = selector.plan(channel: pinned, newestFirst: [], pinned: candidate(releaseRecord(version: v1)),
                                 installedVersion: v3, appVersion: "1.0", failures: [:])
        guard case let .install(targets) = plan.decision else { return XCTFail("\(plan)") }
        XCTAssertEqual(targets.map(\.version), [v1])  // a rollback goes back, on purpose
        let tooNew = selector.plan(channel: pinned, newestFirst: [],
                                   pinned: candidate(releaseRecord(version: v1, minApp: "5")),
                                   installedVersion: v3, appVersion: "1.0", failures: [:])
        XCTAssertEqual(tooNew.decision, .keep(reason: "cannot install the pinned version \(v1)"))
        XCTAssertEqual(tooNew.skipped.first?.reason, .needsNewerApp(required: "5", running: "1.0"))
    }
}
