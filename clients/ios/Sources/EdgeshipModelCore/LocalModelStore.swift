import Foundation

/// Installed models on disk, one folder per model and channel:
///
///     ROOT/{name}/{channel}/state.json                 current + previous (last good) + failures
///     ROOT/{name}/{channel}/versions/{version}/model.tflite
///     ROOT/{name}/{channel}/versions/{version}/release.json
///     ROOT/{name}/{channel}/staging/…                  downloads in progress (same volume)
///     ROOT/{name}/{channel}/incoming/{version}.download finished background downloads
///
/// `state.json` is the pointer: a version counts as installed only once the state names it, and
/// the state is replaced atomically (`FileManager.replaceItemAt`). A version folder is complete
/// before the state points at it (built in staging, then moved), so a crash at any point leaves
/// either the old model or the new one, never half of one. The previous version stays on disk as
/// the last good fallback; older ones are deleted.
///
/// Not thread-safe by itself: `ModelDownloader` (an actor) is its only user.
public final class LocalModelStore {
    public struct Installed: Codable, Hashable, Sendable {
        public let version: String
        public let sha256: String
        public let size: Int64
        public let installedAt: Date
    }

    public struct State: Codable, Equatable, Sendable {
        public var current: Installed?
        public var previous: Installed?
        public var failures: [String: FailureRecord] = [:]

        public init(current: Installed? = nil, previous: Installed? = nil, failures: [String: FailureRecord] = [:]) {
            self.current = current
            self.previous = previous
            self.failures = failures
        }
    }

    public let root: URL
    private let fileManager: FileManager
    private let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }()
    private let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    public init(root: URL, fileManager: FileManager = .default) throws {
        self.root = root
        self.fileManager = fileManager
        try fileManager.createDirectory(at: root, withIntermediateDirectories: true)
        // Models are downloaded again when needed: keep them out of device backups.
        var values = URLResourceValues()
        values.isExcludedFromBackup = true
        var rootURL = root
        try? rootURL.setResourceValues(values)
    }

    /// Application Support/edgeship-models.
    public static func defaultRoot(fileManager: FileManager = .default) -> URL {
        fileManager.urls(for: .applicationSupportDirectory, in: .userDomainMask)[0]
            .appendingPathComponent("edgeship-models", isDirectory: true)
    }

    /// Names become folder names: the same alphabets as the publisher's (docs/delivery.md).
    public static func checkNames(name: String, channel: String) throws {
        guard name.range(of: "^(?!.*\\.\\.)[a-z0-9][a-z0-9._-]{0,62}$", options: .regularExpression) != nil else {
            throw ModelDownloaderError.invalidName("model name \(name) is not a-z 0-9 . _ - (at most 63)")
        }
        guard channel.range(of: "^[a-z0-9][a-z0-9_]{0,31}$", options: .regularExpression) != nil else {
            throw ModelDownloaderError.invalidName("channel \(channel) is not a-z 0-9 _ (at most 32)")
        }
    }

    // MARK: paths

    func channelDirectory(name: String, channel: String) -> URL {
        root.appendingPathComponent(name, isDirectory: true).appendingPathComponent(channel, isDirectory: true)
    }

    func versionDirectory(name: String, channel: String, version: String) -> URL {
        channelDirectory(name: name, channel: channel)
            .appendingPathComponent("versions", isDirectory: true)
            .appendingPathComponent(version, isDirectory: true)
    }

    public func modelURL(name: String, channel: String, version: String) -> URL {
        versionDirectory(name: name, channel: channel, version: version).appendingPathComponent("model.tflite")
    }

    private func stateURL(name: String, channel: String) -> URL {
        channelDirectory(name: name, channel: channel).appendingPathComponent("state.json")
    }

    /// A fresh file name to download into (the caller removes it when done).
    public func newStagingFile(name: String, channel: String, version: String) throws -> URL {
        let staging = channelDirectory(name: name, channel: channel).appendingPathComponent("staging", isDirectory: true)
        try fileManager.createDirectory(at: staging, withIntermediateDirectories: true)
        return staging.appendingPathComponent("\(version)-\(UUID().uuidString).download")
    }

    /// Where a background download that finished while nobody waited for it is parked.
    public func incomingFile(name: String, channel: String, version: String) -> URL {
        channelDirectory(name: name, channel: channel)
            .appendingPathComponent("incoming", isDirectory: true)
            .appendingPathComponent("\(version).download")
    }

    // MARK: state

    /// The channel's state; empty when there is none or it is unreadable.
    public func state(name: String, channel: String) -> State {
        guard let data = try? Data(contentsOf: stateURL(name: name, channel: channel)),
              let state = try? decoder.decode(State.self, from: data) else { return State() }
        return state
    }

    /// Replace state.json atomically.
    public func save(_ state: State, name: String, channel: String) throws {
        let directory = channelDirectory(name: name, channel: channel)
        try fileManager.createDirectory(at: directory, withIntermediateDirectories: true)
        let destination = stateURL(name: name, channel: channel)
        let temporary = directory.appendingPathComponent(".state-\(UUID().uuidString).json")
        try encoder.encode(state).write(to: temporary)
        if fileManager.fileExists(atPath: destination.path) {
            _ = try fileManager.replaceItemAt(destination, withItemAt: temporary)
        } else {
            try fileManager.moveItem(at: temporary, to: destination)
        }
    }

    public func release(name: String, channel: String, version: String) -> Release? {
        let url = versionDirectory(name: name, channel: channel, version: version).appendingPathComponent("release.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? decoder.decode(Release.self, from: data)
    }

    public func recordFailure(version: String, error: String, name: String, channel: String, now: Date = Date()) {
        var state = self.state(name: name, channel: channel)
        var failure = state.failures[version] ?? FailureRecord(attempts: 0, lastError: "", lastAttempt: now)
        if now.timeIntervalSince(failure.lastAttempt) > 24 * 3600 { failure.attempts = 0 }
        failure.attempts += 1
        failure.lastError = String(error.prefix(300))
        failure.lastAttempt = now
        state.failures[version] = failure
        try? save(state, name: name, channel: channel)
    }

    // MARK: install and swap

    /// Move a verified file in as `release`'s version, then swap the state to it atomically;
    /// the version served until now becomes the last good one. Older versions are deleted.
    @discardableResult
    public func install(verifiedFile: URL, release: Release, name: String, channel: String,
                        now: Date = Date()) throws -> Installed {
        let staged = channelDirectory(name: name, channel: channel)
            .appendingPathComponent("staging", isDirectory: true)
            .appendingPathComponent("\(release.version)-\(UUID().uuidString)", isDirectory: true)
        try fileManager.createDirectory(at: staged, withIntermediateDirectories: true)
        defer { try? fileManager.removeItem(at: staged) }
        try fileManager.moveItem(at: verifiedFile, to: staged.appendingPathComponent("model.tflite"))
        try encoder.encode(release).write(to: staged.appendingPathComponent("release.json"))

        let final = versionDirectory(name: name, channel: channel, version: release.version)
        try fileManager.createDirectory(at: final.deletingLastPathComponent(), withIntermediateDirectories: true)
        if fileManager.fileExists(atPath: final.path) {
            _ = try fileManager.replaceItemAt(final, withItemAt: staged)   // same version again (same sha256)
        } else {
            try fileManager.moveItem(at: staged, to: final)
        }

        var state = self.state(name: name, channel: channel)
        let installed = Installed(version: release.version, sha256: release.modelFile.sha256,
                                  size: release.modelFile.size, installedAt: now)
        if let current = state.current, current.version != release.version {
            state.previous = current
        }
        state.current = installed
        state.failures[release.version] = nil
        try save(state, name: name, channel: channel)        // the swap
        prune(name: name, channel: channel, keeping: [state.current?.version, state.previous?.version])
        return installed
    }

    /// The model to serve: the current one if it still checks out, else the last good one
    /// (which then becomes current), else nil. `verifyHash` re-hashes the file (else size only).
    public func usableModel(name: String, channel: String, verifyHash: Bool)
        -> (installed: Installed, url: URL, source: CustomModel.Source)? {
        var state = self.state(name: name, channel: channel)
        for (candidate, source) in [(state.current, CustomModel.Source.downloaded), (state.previous, .lastGood)] {
            guard let candidate else { continue }
            let url = modelURL(name: name, channel: channel, version: candidate.version)
            do {
                if verifyHash {
                    try Integrity.verify(url, size: candidate.size, sha256: candidate.sha256)
                } else if try Integrity.size(of: url) != candidate.size {
                    continue
                }
            } catch {
                continue
            }
            if source == .lastGood {    // the current one is damaged: the last good one takes over
                state.current = candidate
                state.previous = nil
                try? save(state, name: name, channel: channel)
                prune(name: name, channel: channel, keeping: [candidate.version])
            }
            return (candidate, url, source)
        }
        return nil
    }

    private func prune(name: String, channel: String, keeping: [String?]) {
        let versions = channelDirectory(name: name, channel: channel).appendingPathComponent("versions", isDirectory: true)
        let keep = Set(keeping.compactMap { $0 })
        for entry in (try? fileManager.contentsOfDirectory(atPath: versions.path)) ?? [] where !keep.contains(entry) {
            try? fileManager.removeItem(at: versions.appendingPathComponent(entry))
        }
    }

    // MARK: list and delete

    public func list() -> [LocalModelInfo] {
        var models: [LocalModelInfo] = []
        for name in (try? fileManager.contentsOfDirectory(atPath: root.path)) ?? [] {
            let nameDirectory = root.appendingPathComponent(name, isDirectory: true)
            for channel in (try? fileManager.contentsOfDirectory(atPath: nameDirectory.path)) ?? [] {
                guard let current = state(name: name, channel: channel).current else { continue }
                models.append(LocalModelInfo(
                    name: name, channel: channel, version: current.version,
                    path: modelURL(name: name, channel: channel, version: current.version).path,
                    size: current.size, hash: current.sha256, installedAt: current.installedAt,
                    previousVersion: state(name: name, channel: channel).previous?.version))
            }
        }
        return models.sorted { ($0.name, $0.channel) < ($1.name, $1.channel) }
    }

    /// Delete a model's files: one channel, or every channel when `channel` is nil.
    public func delete(name: String, channel: String?) throws {
        let target = channel.map { channelDirectory(name: name, channel: $0) }
            ?? root.appendingPathComponent(name, isDirectory: true)
        if fileManager.fileExists(atPath: target.path) {
            try fileManager.removeItem(at: target)
        }
    }
}
