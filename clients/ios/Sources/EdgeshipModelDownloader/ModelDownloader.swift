@_exported import EdgeshipModelCore
import FirebaseAuth
import FirebaseCore
import FirebaseFirestore
import Foundation
import os

/// Downloads the models edgeship publishes, shaped like Firebase ML's `ModelDownloader`:
///
///     let model = try await ModelDownloader.modelDownloader()
///         .getModel(name: "edgeship-detector", channel: "stable",
///                   downloadType: .localModelUpdateInBackground,
///                   conditions: ModelDownloadConditions(allowsCellularAccess: false))
///     let interpreter = try Interpreter(modelPath: model.path)
///
/// It reads the channel's control document and release records from Firestore, picks the newest
/// release this app can install (skipping — and saying why — releases that need a newer app, have
/// an unusable record, or failed to install), downloads its model file from the bucket the
/// record names, checks size and SHA-256, optionally runs your validation (e.g. a LiteRT smoke
/// run), then swaps it in atomically, keeping the previous model as the last good one. When
/// nothing can be installed it serves the installed model, then the last good one, then the
/// model bundled with the app. docs/ios.md is the guide.
public actor ModelDownloader {
    public struct Configuration: Sendable {
        /// The running app's version, compared with each release's `min_app_version`.
        /// nil: `CFBundleShortVersionString` of the main bundle.
        public var appVersion: AppVersion?
        /// Where installed models live (default Application Support/edgeship-models, excluded
        /// from backups).
        public var storageDirectory: URL
        /// Models shipped in the app, by model name: the last resort.
        public var bundledModels: [String: BundledModel]
        /// Identifier of the background URLSession (one per app).
        public var backgroundSessionIdentifier: String
        /// Extra check before a downloaded model is swapped in (e.g. load it in the interpreter
        /// and run it once on zeros, checking the input shape against `release.input`). A throw
        /// refuses the release, like a hash mismatch.
        public var validate: (@Sendable (_ file: URL, _ release: Release) async throws -> Void)?
        /// Sign in anonymously when no user is signed in (the rules require a user).
        public var signInAnonymouslyIfNeeded: Bool
        /// Re-hash the installed model before serving it (else its size is checked).
        public var verifyHashOnLoad: Bool
        /// A release that failed this many times is skipped until `retryFailedAfter` has passed.
        public var maxInstallAttempts: Int
        public var retryFailedAfter: TimeInterval

        public init(appVersion: AppVersion? = nil,
                    storageDirectory: URL = LocalModelStore.defaultRoot(),
                    bundledModels: [String: BundledModel] = [:],
                    backgroundSessionIdentifier: String = "\(Bundle.main.bundleIdentifier ?? "app").edgeship-models",
                    validate: (@Sendable (URL, Release) async throws -> Void)? = nil,
                    signInAnonymouslyIfNeeded: Bool = true,
                    verifyHashOnLoad: Bool = true,
                    maxInstallAttempts: Int = 3,
                    retryFailedAfter: TimeInterval = 24 * 3600) {
            self.appVersion = appVersion
            self.storageDirectory = storageDirectory
            self.bundledModels = bundledModels
            self.backgroundSessionIdentifier = backgroundSessionIdentifier
            self.validate = validate
            self.signInAnonymouslyIfNeeded = signInAnonymouslyIfNeeded
            self.verifyHashOnLoad = verifyHashOnLoad
            self.maxInstallAttempts = maxInstallAttempts
            self.retryFailedAfter = retryFailedAfter
        }
    }

    private struct Key: Hashable {
        let name: String
        let channel: String
    }

    private let app: FirebaseApp
    public nonisolated let configuration: Configuration
    private let store: LocalModelStore
    private let source: FirestoreReleaseSource
    private let transfer: ModelTransfer
    private let selector: ReleaseSelector
    private var updates: [Key: Task<CustomModel, Error>] = [:]
    private var reports: [Key: UpdateReport] = [:]
    private let log = Logger(subsystem: "dev.edgeship.ModelDownloader", category: "update")

    private static let instancesLock = NSLock()
    private static var instances: [String: ModelDownloader] = [:]

    /// The downloader of a Firebase app (the default app when nil); one per app. The
    /// configuration is used the first time an app's downloader is made.
    public static func modelDownloader(app: FirebaseApp? = nil,
                                       configuration: Configuration = Configuration()) -> ModelDownloader {
        guard let app = app ?? FirebaseApp.app() else {
            preconditionFailure("FirebaseApp.configure() must run before ModelDownloader.modelDownloader()")
        }
        instancesLock.lock()
        defer { instancesLock.unlock() }
        if let existing = instances[app.name] { return existing }
        let downloader = ModelDownloader(app: app, configuration: configuration)
        instances[app.name] = downloader
        return downloader
    }

    /// Call from `application(_:handleEventsForBackgroundURLSession:completionHandler:)`; create
    /// the downloader in `application(_:didFinishLaunchingWithOptions:)` first. Returns false if
    /// the identifier is not this package's.
    @discardableResult
    public static func handleEventsForBackgroundURLSession(identifier: String,
                                                           completionHandler: @escaping () -> Void) -> Bool {
        ModelTransfer.handleEvents(identifier: identifier, completionHandler: completionHandler)
    }

    private init(app: FirebaseApp, configuration: Configuration) {
        let store: LocalModelStore
        do {
            store = try LocalModelStore(root: configuration.storageDirectory)
        } catch {
            preconditionFailure("cannot create \(configuration.storageDirectory.path): \(error)")
        }
        self.app = app
        self.configuration = configuration
        self.store = store
        source = FirestoreReleaseSource(db: Firestore.firestore(app: app))
        transfer = ModelTransfer.shared(app: app, identifier: configuration.backgroundSessionIdentifier) {
            name, channel, version in store.incomingFile(name: name, channel: channel, version: version)
        }
        selector = ReleaseSelector(maxAttempts: configuration.maxInstallAttempts,
                                   retryAfter: configuration.retryFailedAfter)
    }

    // MARK: public API

    /// The model to run for `name` on `channel` (see `ModelDownloadType`). `progress` gets the
    /// download's fraction, on the main queue. Throws only when there is no model at all
    /// (nothing installed, nothing bundled, nothing installable); `model.report` says why the
    /// returned model is the one it is.
    public func getModel(name: String, channel: String = "stable",
                         downloadType: ModelDownloadType = .latestModel,
                         conditions: ModelDownloadConditions = ModelDownloadConditions(),
                         progress: (@Sendable (Double) -> Void)? = nil) async throws -> CustomModel {
        try LocalModelStore.checkNames(name: name, channel: channel)
        let key = Key(name: name, channel: channel)
        switch downloadType {
        case .localModel:
            if let local = try localModel(key, reason: "the installed model (.localModel)") { return local }
            return try await update(key, conditions: conditions, progress: progress)
        case .localModelUpdateInBackground:
            if let local = try localModel(key, reason: "the installed model; looking for a newer one in the background") {
                startBackgroundUpdate(key, conditions: conditions)
                return local
            }
            return try await update(key, conditions: conditions, progress: progress)
        case .latestModel:
            return try await update(key, conditions: conditions, progress: progress)
        }
    }

    /// Completion-handler form (as Firebase ML's); `completion` runs on the main queue.
    public nonisolated func getModel(name: String, channel: String = "stable",
                                     downloadType: ModelDownloadType,
                                     conditions: ModelDownloadConditions,
                                     progressHandler: (@Sendable (Double) -> Void)? = nil,
                                     completion: @escaping @Sendable (Result<CustomModel, Error>) -> Void) {
        Task {
            let result: Result<CustomModel, Error>
            do {
                result = .success(try await self.getModel(name: name, channel: channel, downloadType: downloadType,
                                                          conditions: conditions, progress: progressHandler))
            } catch {
                result = .failure(error)
            }
            DispatchQueue.main.async { completion(result) }
        }
    }

    /// Push updates: listen to the channel (its newest release and its control document) and
    /// update in the background on every change; `.edgeshipModelUpdated` is posted when a new
    /// model is installed. Keep the returned observation; `cancel()` it (or drop it) to stop.
    public func observeUpdates(name: String, channel: String = "stable",
                               conditions: ModelDownloadConditions = ModelDownloadConditions()) async throws
        -> ModelUpdateObservation {
        try LocalModelStore.checkNames(name: name, channel: channel)
        try await ensureSignedIn()
        let key = Key(name: name, channel: channel)
        let registrations = source.listen(model: name, channel: channel) { [weak self] in
            guard let self else { return }
            Task { await self.startBackgroundUpdate(key, conditions: conditions) }
        }
        return ModelUpdateObservation(registrations)
    }

    /// Installed models (one per model and channel).
    public func listDownloadedModels() -> [LocalModelInfo] { store.list() }

    /// Delete a model's installed files (one channel, or all when `channel` is nil). The bundled
    /// model, if any, is what `getModel` serves until a new download.
    public func deleteDownloadedModel(name: String, channel: String? = nil) throws {
        for (key, task) in updates where key.name == name && (channel == nil || key.channel == channel) {
            task.cancel()
            updates[key] = nil
        }
        try store.delete(name: name, channel: channel)
    }

    /// What the last look at a channel decided, and why.
    public func lastReport(name: String, channel: String = "stable") -> UpdateReport? {
        reports[Key(name: name, channel: channel)]
    }

    // MARK: update

    private func appVersion() throws -> AppVersion {
        guard let version = configuration.appVersion ?? AppVersion.current() else {
            throw ModelDownloaderError.unknownAppVersion
        }
        return version
    }

    /// The installed (or last good) model, unless it cannot run on this app.
    private func localModel(_ key: Key, reason: String) throws -> CustomModel? {
        guard let usable = store.usableModel(name: key.name, channel: key.channel,
                                             verifyHash: configuration.verifyHashOnLoad) else { return nil }
        let release = store.release(name: key.name, channel: key.channel, version: usable.installed.version)
        let running = try appVersion()
        if let release, !release.runs(on: running) { return nil }
        let why = usable.source == .lastGood ? "the installed model failed its check; serving the last good one" : reason
        return CustomModel(name: key.name, channel: key.channel, version: usable.installed.version,
                           path: usable.url.path, size: usable.installed.size, hash: usable.installed.sha256,
                           source: usable.source, release: release,
                           report: UpdateReport(installed: nil, serving: usable.installed.version, reason: why))
    }

    private func bundledModel(_ key: Key, report: UpdateReport) -> CustomModel? {
        guard let bundled = configuration.bundledModels[key.name], let url = bundled.url,
              let size = try? Integrity.size(of: url), let hash = try? Integrity.sha256Hex(of: url) else { return nil }
        return CustomModel(name: key.name, channel: key.channel, version: bundled.version, path: url.path,
                           size: size, hash: hash, source: .bundled, release: nil,
                           report: UpdateReport(installed: nil, serving: "bundled \(bundled.version)",
                                                reason: report.reason, skipped: report.skipped))
    }

    /// One update of a channel at a time; concurrent callers share it.
    private func update(_ key: Key, conditions: ModelDownloadConditions,
                        progress: (@Sendable (Double) -> Void)?) async throws -> CustomModel {
        if let running = updates[key] { return try await running.value }
        let task = Task { try await self.runUpdate(key, conditions: conditions, progress: progress) }
        updates[key] = task
        defer { updates[key] = nil }
        return try await task.value
    }

    private func startBackgroundUpdate(_ key: Key, conditions: ModelDownloadConditions) {
        guard updates[key] == nil else { return }
        let before = store.state(name: key.name, channel: key.channel).current?.version
        let task = Task { try await self.runUpdate(key, conditions: conditions, progress: nil) }
        updates[key] = task
        Task {
            let result = await task.result
            self.finishBackgroundUpdate(key)
            if case let .success(model) = result, model.version != before, model.source == .downloaded {
                let userInfo: [String: Any] = ["name": key.name, "channel": key.channel,
                                               "version": model.version, "report": model.report]
                DispatchQueue.main.async {
                    NotificationCenter.default.post(name: .edgeshipModelUpdated, object: nil, userInfo: userInfo)
                }
            }
        }
    }

    private func finishBackgroundUpdate(_ key: Key) { updates[key] = nil }

    /// Look at the channel, install what the selector says, fall back when that fails.
    private func runUpdate(_ key: Key, conditions: ModelDownloadConditions,
                           progress: (@Sendable (Double) -> Void)?) async throws -> CustomModel {
        let appVersion = try self.appVersion()
        let plan: SelectionPlan
        do {
            try await ensureSignedIn()
            let channelState = try await source.channelState(model: key.name, channel: key.channel)
            var pinned: ReleaseCandidate?
            if let version = channelState.pinnedVersion {
                pinned = try await source.release(model: key.name, channel: key.channel, version: version)
            }
            let releases = channelState.pinnedVersion == nil
                ? try await source.newestReleases(model: key.name, channel: key.channel) : []
            let state = store.state(name: key.name, channel: key.channel)
            plan = selector.plan(channel: channelState, newestFirst: releases, pinned: pinned,
                                 installedVersion: state.current?.version, appVersion: appVersion,
                                 failures: state.failures)
        } catch {
            // Firestore unreachable, not signed in, a broken control document: keep what we have.
            return try serveWithoutInstalling(key, UpdateReport(installed: nil, serving: nil,
                                                  reason: "could not read the channel: \(error)"))
        }

        let targets: [Release]
        switch plan.decision {
        case let .keep(reason):
            return try serveWithoutInstalling(key, UpdateReport(installed: nil, serving: nil, reason: reason, skipped: plan.skipped))
        case let .install(releases):
            targets = releases
        }

        var skipped = plan.skipped
        for release in targets {
            do {
                let model = try await install(release, key: key, conditions: conditions, progress: progress)
                let reason = skipped.isEmpty
                    ? "installed the newest release"
                    : "installed the newest release this app can install"
                let report = UpdateReport(installed: release.version, serving: release.version,
                                          reason: reason, skipped: skipped)
                reports[key] = report
                log.notice("\(key.name, privacy: .public)/\(key.channel, privacy: .public): \(report.description, privacy: .public)")
                return model.with(report: report)
            } catch let error as TransferError where !error.isReleaseDefect {
                // Network, sign-in, rules, App Check, cancelled: nothing is wrong with the
                // release, and an older one would fail the same way. Keep what we have.
                return try serveWithoutInstalling(key, UpdateReport(installed: nil, serving: nil,
                                                      reason: "could not download \(release.version): \(error)",
                                                      skipped: skipped))
            } catch let error as ModelDownloaderError {
                if case .conditionsNotMet = error {
                    return try serveWithoutInstalling(key, UpdateReport(installed: nil, serving: nil, reason: error.description,
                                                          skipped: skipped))
                }
                skipped.append(recordFailure(release, key: key, error: error.description))
            } catch is CancellationError {
                throw CancellationError()
            } catch let error as CocoaError {
                // the device, not the release (disk full, …)
                return try serveWithoutInstalling(key, UpdateReport(installed: nil, serving: nil,
                                                      reason: "could not store \(release.version): \(error.localizedDescription)",
                                                      skipped: skipped))
            } catch {
                // A defect of this release (missing file, size or hash mismatch, validation):
                // remember it and try the next older release.
                skipped.append(recordFailure(release, key: key, error: "\(error)"))
            }
        }
        return try serveWithoutInstalling(key, UpdateReport(installed: nil, serving: nil,
                                              reason: "no release could be installed", skipped: skipped))
    }

    private func recordFailure(_ release: Release, key: Key, error: String) -> SkippedRelease {
        store.recordFailure(version: release.version, error: error, name: key.name, channel: key.channel)
        log.error("\(key.name, privacy: .public)/\(key.channel, privacy: .public): not installing \(release.version, privacy: .public): \(error, privacy: .public)")
        return SkippedRelease(version: release.version, reason: .installFailed(error))
    }

    /// Nothing installed this time: the installed model, else the last good one, else the bundled
    /// one, else throw with every reason.
    private func serveWithoutInstalling(_ key: Key, _ report: UpdateReport) throws -> CustomModel {
        if let local = try localModel(key, reason: report.reason) {
            let kept = UpdateReport(installed: nil, serving: local.version,
                                    reason: local.source == .lastGood ? local.report.reason : report.reason,
                                    skipped: report.skipped)
            reports[key] = kept
            log.info("\(key.name, privacy: .public)/\(key.channel, privacy: .public): \(kept.description, privacy: .public)")
            return local.with(report: kept)
        }
        if let bundled = bundledModel(key, report: report) {
            reports[key] = bundled.report
            log.notice("\(key.name, privacy: .public)/\(key.channel, privacy: .public): \(bundled.report.description, privacy: .public)")
            return bundled
        }
        reports[key] = report
        throw ModelDownloaderError.noModelAvailable(name: key.name, channel: key.channel,
                                                    reasons: [report.reason] + report.skipped.map(\.description))
    }

    private func ensureSignedIn() async throws {
        let auth = Auth.auth(app: app)
        if auth.currentUser != nil { return }
        guard configuration.signInAnonymouslyIfNeeded else { throw ModelDownloaderError.notSignedIn }
        _ = try await auth.signInAnonymously()
    }

    /// Download → size + SHA-256 → your validation → atomic swap. The served model is untouched
    /// until the new one passed every check.
    private func install(_ release: Release, key: Key, conditions: ModelDownloadConditions,
                         progress: (@Sendable (Double) -> Void)?) async throws -> CustomModel {
        let staging = try store.newStagingFile(name: key.name, channel: key.channel, version: release.version)
        defer { try? FileManager.default.removeItem(at: staging) }

        let incoming = store.incomingFile(name: key.name, channel: key.channel, version: release.version)
        if FileManager.default.fileExists(atPath: incoming.path) {
            // a background download of this version finished while the app was not waiting
            try FileManager.default.moveItem(at: incoming, to: staging)
        } else {
            var onMain: (@Sendable (Double) -> Void)?
            if let progress {
                onMain = { fraction in DispatchQueue.main.async { progress(fraction) } }
            }
            if conditions.allowsBackgroundDownloading {
                try await transfer.downloadInBackground(release, name: key.name, channel: key.channel, to: staging,
                                                        conditions: conditions, progress: onMain)
            } else {
                if let unmet = await NetworkConditions.unmet(conditions) {
                    throw ModelDownloaderError.conditionsNotMet(unmet)
                }
                try await transfer.downloadInForeground(release, to: staging, progress: onMain)
            }
        }
        try Integrity.verify(staging, size: release.modelFile.size, sha256: release.modelFile.sha256)
        if let validate = configuration.validate {
            do {
                try await validate(staging, release)
            } catch {
                throw ModelDownloaderError.validation("\(error)")
            }
        }
        let installed = try store.install(verifiedFile: staging, release: release, name: key.name, channel: key.channel)
        let url = store.modelURL(name: key.name, channel: key.channel, version: installed.version)
        return CustomModel(name: key.name, channel: key.channel, version: installed.version, path: url.path,
                           size: installed.size, hash: installed.sha256, source: .downloaded, release: release,
                           report: UpdateReport(installed: installed.version, serving: installed.version,
                                                reason: "installed"))
    }
}

/// Firestore listeners of `observeUpdates`; removed on `cancel()` or when released.
public final class ModelUpdateObservation: @unchecked Sendable {
    private let lock = NSLock()
    private var registrations: [ListenerRegistration]

    init(_ registrations: [ListenerRegistration]) { self.registrations = registrations }

    public func cancel() {
        lock.lock()
        let current = registrations
        registrations = []
        lock.unlock()
        current.forEach { $0.remove() }
    }

    deinit { cancel() }
}
