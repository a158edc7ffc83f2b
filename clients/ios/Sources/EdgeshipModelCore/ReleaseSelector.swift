import Foundation

/// Why a release was not installed. Every skipped release carries one: the app can show or log
/// exactly why it runs what it runs.
public enum SkipReason: Equatable, Sendable, CustomStringConvertible {
    /// The release needs a newer app (`min_app_version`).
    case needsNewerApp(required: AppVersion, running: AppVersion)
    /// Its record is unreadable or inconsistent (missing field, wrong type, bad hash, …).
    case malformedRecord(String)
    /// It failed to install `attempts` times; retried after the cool-down.
    case failedBefore(attempts: Int, lastError: String)
    /// It failed to install just now (size or sha256 mismatch, missing file, validation).
    case installFailed(String)

    public var description: String {
        switch self {
        case let .needsNewerApp(required, running):
            return "needs app \(required) or newer, this app is \(running)"
        case let .malformedRecord(problem):
            return "its release record is unusable: \(problem)"
        case let .failedBefore(attempts, lastError):
            return "failed to install \(attempts) time\(attempts == 1 ? "" : "s") (last: \(lastError))"
        case let .installFailed(problem):
            return "failed to install: \(problem)"
        }
    }
}

public struct SkippedRelease: Equatable, Sendable, CustomStringConvertible {
    public let version: String
    public let reason: SkipReason

    public init(version: String, reason: SkipReason) {
        self.version = version
        self.reason = reason
    }

    public var description: String { "\(version): \(reason)" }
}

/// Install attempts that failed for a release-specific reason (kept across launches).
public struct FailureRecord: Codable, Equatable, Sendable {
    public var attempts: Int
    public var lastError: String
    public var lastAttempt: Date

    public init(attempts: Int, lastError: String, lastAttempt: Date) {
        self.attempts = attempts
        self.lastError = lastError
        self.lastAttempt = lastAttempt
    }
}

/// What to do for a channel, and why.
public struct SelectionPlan: Equatable, Sendable {
    public enum Decision: Equatable, Sendable {
        /// Install the first of these that installs (newest first); each is newer than what is
        /// installed and runs on this app.
        case install([Release])
        /// Install nothing; keep what is installed (or the bundled model), for this reason.
        case keep(reason: String)
    }

    public let decision: Decision
    /// Releases passed over on the way, newest first, each with its reason.
    public let skipped: [SkippedRelease]
}

/// The pure decision the downloader makes for a channel; mirrors edgeship/delivery/client.py:
///
/// - paused channel: install nothing (the operators' kill switch);
/// - pinned channel: the pinned release only (a rollback); if this app cannot run or install it,
///   keep what is installed and say why — never something the operators did not choose;
/// - otherwise: the newest release this app can install. Releases that need a newer app, whose
///   record is unusable, or that failed `maxAttempts` times within `retryAfter` are skipped, each
///   with its reason, and the next older one is tried — but never one older than (or equal to)
///   the installed version: the installed model is kept instead.
public struct ReleaseSelector: Sendable {
    public var maxAttempts: Int
    public var retryAfter: TimeInterval

    public init(maxAttempts: Int = 3, retryAfter: TimeInterval = 24 * 3600) {
        self.maxAttempts = maxAttempts
        self.retryAfter = retryAfter
    }

    /// - Parameters:
    ///   - newestFirst: the channel's release list, newest first (ignored when pinned).
    ///   - pinned: the pinned version's release, nil if it has none (ignored when not pinned).
    public func plan(channel: ChannelState, newestFirst: [ReleaseCandidate], pinned: ReleaseCandidate?,
                     installedVersion: String?, appVersion: AppVersion,
                     failures: [String: FailureRecord], now: Date = Date()) -> SelectionPlan {
        if channel.paused {
            let who = channel.updatedBy.map { " by \($0)" } ?? ""
            let why = channel.reason.map { ": \($0)" } ?? ""
            return SelectionPlan(decision: .keep(reason: "channel paused\(who)\(why)"), skipped: [])
        }
        if let pinnedVersion = channel.pinnedVersion {
            guard let pinned, pinned.version == pinnedVersion else {
                return SelectionPlan(decision: .keep(reason: "pinned version \(pinnedVersion) has no release on this channel"),
                                     skipped: [])
            }
            if pinnedVersion == installedVersion {
                return SelectionPlan(decision: .keep(reason: "serving the pinned version \(pinnedVersion)"), skipped: [])
            }
            if let reason = skipReason(pinned, appVersion: appVersion, failures: failures, now: now) {
                return SelectionPlan(decision: .keep(reason: "cannot install the pinned version \(pinnedVersion)"),
                                     skipped: [SkippedRelease(version: pinnedVersion, reason: reason)])
            }
            guard case let .success(release) = pinned.result else {
                return SelectionPlan(decision: .keep(reason: "pinned version unreadable"), skipped: [])
            }
            return SelectionPlan(decision: .install([release]), skipped: [])
        }

        var targets: [Release] = []
        var skipped: [SkippedRelease] = []
        for candidate in newestFirst {
            if let installedVersion, candidate.version <= installedVersion { break }  // version ids sort by time
            if let reason = skipReason(candidate, appVersion: appVersion, failures: failures, now: now) {
                skipped.append(SkippedRelease(version: candidate.version, reason: reason))
            } else if case let .success(release) = candidate.result {
                targets.append(release)
            }
        }
        if !targets.isEmpty {
            return SelectionPlan(decision: .install(targets), skipped: skipped)
        }
        let reason: String
        switch (installedVersion, newestFirst.isEmpty) {
        case (nil, true): reason = "the channel has no release"
        case (nil, false): reason = "no release on this channel can be installed by this app"
        case let (installed?, _) where skipped.isEmpty: reason = "\(installed) is the newest release"
        case let (installed?, _): reason = "no release newer than \(installed) can be installed by this app"
        }
        return SelectionPlan(decision: .keep(reason: reason), skipped: skipped)
    }

    func skipReason(_ candidate: ReleaseCandidate, appVersion: AppVersion,
                    failures: [String: FailureRecord], now: Date) -> SkipReason? {
        switch candidate.result {
        case let .failure(error):
            return .malformedRecord(error.description)
        case let .success(release):
            if !release.runs(on: appVersion) {
                return .needsNewerApp(required: release.minAppVersion, running: appVersion)
            }
            if let failure = failures[release.version], failure.attempts >= maxAttempts,
               now.timeIntervalSince(failure.lastAttempt) < retryAfter {
                return .failedBefore(attempts: failure.attempts, lastError: failure.lastError)
            }
            return nil
        }
    }
}
