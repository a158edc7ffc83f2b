import EdgeshipModelCore
import FirebaseAppCheck
import FirebaseAuth
import FirebaseCore
import FirebaseStorage
import Foundation

/// A failed download, classified. A defect of the release (its file does not exist, or is
/// larger than the record says) lets the downloader fall back to an older release and counts
/// against the release; anything else (network, sign-in, rules, App Check, cancelled) does not.
struct TransferError: Error, CustomStringConvertible {
    let description: String
    let isReleaseDefect: Bool
}

/// Downloads a release's model file from the bucket its record names.
///
/// - Foreground: the Firebase Storage SDK, on `Storage.storage(app:url: "gs://BUCKET")` — the
///   bucket comes from the release record. (`Storage.storage().reference(forURL:)` with a bucket
///   other than the app's default one is a fatalError in the SDK; `storage(url:)` is the way.)
/// - Background: a background `URLSession` download of the same object through the same
///   Firebase Storage endpoint, authorized the way the SDK authorizes its requests (Firebase ID
///   token, App Check token when available), so the Storage rules and App Check still apply. It
///   continues while the app is suspended; the system waits for a network the conditions allow.
final class ModelTransfer: NSObject, URLSessionDownloadDelegate {
    private struct TaskInfo: Codable {
        let name: String
        let channel: String
        let version: String
    }

    private struct Waiter {
        let destination: URL
        let expectedSize: Int64
        let progress: (@Sendable (Double) -> Void)?
        let continuation: CheckedContinuation<Void, Error>
        var error: Error?
    }

    let app: FirebaseApp
    let identifier: String
    /// Where a finished download goes when nobody waits for it any more (the app was killed and
    /// relaunched in the background for it): the store's incoming folder.
    private let orphanDestination: @Sendable (_ name: String, _ channel: String, _ version: String) -> URL

    private let lock = NSLock()
    private var waiting: [Int: Waiter] = [:]
    private var backgroundCompletionHandler: (() -> Void)?
    /// Made at once (not lazily): creating it at launch reconnects to downloads still running
    /// for this identifier, and it is then only read.
    private var session: URLSession!

    private static let registryLock = NSLock()
    private static var registry: [String: ModelTransfer] = [:]

    /// One transfer per background session identifier (a session identifier may be used by one
    /// URLSession only).
    static func shared(app: FirebaseApp, identifier: String,
                       orphanDestination: @escaping @Sendable (String, String, String) -> URL) -> ModelTransfer {
        registryLock.lock()
        defer { registryLock.unlock() }
        if let existing = registry[identifier] { return existing }
        let transfer = ModelTransfer(app: app, identifier: identifier, orphanDestination: orphanDestination)
        registry[identifier] = transfer
        return transfer
    }

    /// From the app delegate's `application(_:handleEventsForBackgroundURLSession:completionHandler:)`.
    static func handleEvents(identifier: String, completionHandler: @escaping () -> Void) -> Bool {
        registryLock.lock()
        let transfer = registry[identifier]
        registryLock.unlock()
        guard let transfer else { return false }
        transfer.locked { transfer.backgroundCompletionHandler = completionHandler }
        return true
    }

    private init(app: FirebaseApp, identifier: String,
                 orphanDestination: @escaping @Sendable (String, String, String) -> URL) {
        self.app = app
        self.identifier = identifier
        self.orphanDestination = orphanDestination
        super.init()
        let configuration = URLSessionConfiguration.background(withIdentifier: identifier)
        configuration.sessionSendsLaunchEvents = true
        configuration.isDiscretionary = false
        configuration.allowsCellularAccess = true   // narrowed per request by the download conditions
        session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: foreground (Firebase Storage SDK)

    func downloadInForeground(_ release: Release, to destination: URL,
                              progress: (@Sendable (Double) -> Void)?) async throws {
        let storage = Storage.storage(app: app, url: "gs://\(release.bucket)")
        let reference = storage.reference(withPath: release.modelObjectPath)
        let box = DownloadTaskBox()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                let task = reference.write(toFile: destination)
                box.set(task)
                let once = ResumeOnce(continuation)
                task.observe(.progress) { snapshot in
                    guard let done = snapshot.progress?.completedUnitCount else { return }
                    if done > release.modelFile.size {   // more than the record says: stop now
                        task.cancel()
                        once.resume(throwing: TransferError(
                            description: "the model file is larger than the release's \(release.modelFile.size) bytes",
                            isReleaseDefect: true))
                        return
                    }
                    progress?(min(Double(done) / Double(max(release.modelFile.size, 1)), 1))
                }
                task.observe(.success) { _ in
                    task.removeAllObservers()
                    once.resume()
                }
                task.observe(.failure) { snapshot in
                    task.removeAllObservers()
                    once.resume(throwing: Self.classify(snapshot.error, object: release.modelFile.uri))
                }
            }
        } onCancel: {
            box.cancel()
        }
    }

    // MARK: background (URLSession)

    func downloadInBackground(_ release: Release, name: String, channel: String, to destination: URL,
                              conditions: ModelDownloadConditions,
                              progress: (@Sendable (Double) -> Void)?) async throws {
        // The same object the SDK would fetch: bucket from the release record, through storage(url:).
        let reference = Storage.storage(app: app, url: "gs://\(release.bucket)")
            .reference(withPath: release.modelObjectPath)
        var request = URLRequest(url: try Self.mediaURL(bucket: reference.bucket, object: reference.fullPath))
        request.allowsCellularAccess = conditions.allowsCellularAccess
        request.allowsExpensiveNetworkAccess = conditions.allowsExpensiveNetworkAccess
        request.allowsConstrainedNetworkAccess = conditions.allowsConstrainedNetworkAccess
        for (field, value) in try await authorizationHeaders() {
            request.setValue(value, forHTTPHeaderField: field)
        }
        let task = session.downloadTask(with: request)
        task.taskDescription = String(decoding: try JSONEncoder().encode(
            TaskInfo(name: name, channel: channel, version: release.version)), as: UTF8.self)
        task.countOfBytesClientExpectsToReceive = release.modelFile.size
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                locked {
                    waiting[task.taskIdentifier] = Waiter(destination: destination, expectedSize: release.modelFile.size,
                                                          progress: progress, continuation: continuation, error: nil)
                }
                task.resume()
            }
        } onCancel: {
            task.cancel()
        }
    }

    /// https://firebasestorage.googleapis.com/v0/b/BUCKET/o/OBJECT?alt=media, escaped as the SDK
    /// escapes (every "/" of the object name included).
    static func mediaURL(bucket: String, object: String) throws -> URL {
        let allowed = CharacterSet(charactersIn:
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$'()*,=:@")
        var components = URLComponents()
        components.scheme = "https"
        components.host = "firebasestorage.googleapis.com"
        guard let escapedBucket = bucket.addingPercentEncoding(withAllowedCharacters: allowed),
              let escapedObject = object.addingPercentEncoding(withAllowedCharacters: allowed) else {
            throw TransferError(description: "cannot escape gs://\(bucket)/\(object)", isReleaseDefect: true)
        }
        components.percentEncodedPath = "/v0/b/\(escapedBucket)/o/\(escapedObject)"
        components.queryItems = [URLQueryItem(name: "alt", value: "media")]
        guard let url = components.url else {
            throw TransferError(description: "bad object URL for gs://\(bucket)/\(object)", isReleaseDefect: true)
        }
        return url
    }

    /// The headers the Storage SDK sends: the user's Firebase ID token, the app id, and the
    /// App Check token when App Check is set up (without it, enforced App Check refuses us).
    private func authorizationHeaders() async throws -> [String: String] {
        guard let user = Auth.auth(app: app).currentUser else {
            throw TransferError(description: "not signed in", isReleaseDefect: false)
        }
        var headers = ["Authorization": "Firebase \(try await user.getIDToken())",
                       "x-firebase-gmpid": app.options.googleAppID]
        if let appCheck = AppCheck.appCheck(app: app),
           let token = try? await appCheck.token(forcingRefresh: false) {
            headers["X-Firebase-AppCheck"] = token.token
        }
        return headers
    }

    // MARK: URLSessionDownloadDelegate (on the session's delegate queue)

    func urlSession(_ session: URLSession, downloadTask: URLSessionDownloadTask, didWriteData bytesWritten: Int64,
                    totalBytesWritten: Int64, totalBytesExpectedToWrite: Int64) {
        guard let waiter = locked({ waiting[downloadTask.taskIdentifier] }) else { return }
        if totalBytesWritten > waiter.expectedSize {
            locked {
                waiting[downloadTask.taskIdentifier]?.error = TransferError(
                    description: "the model file is larger than the release's \(waiter.expectedSize) bytes",
                    isReleaseDefect: true)
            }
            downloadTask.cancel()
            return
        }
        waiter.progress?(min(Double(totalBytesWritten) / Double(max(waiter.expectedSize, 1)), 1))
    }

    func urlSession(_ session: URLSession, downloadTask: URLSessionDownloadTask, didFinishDownloadingTo location: URL) {
        // `location` is deleted as soon as this method returns: move the file now.
        let id = downloadTask.taskIdentifier
        let status = (downloadTask.response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            locked { waiting[id]?.error = Self.httpError(status) }
            return
        }
        let destination: URL
        if let waiter = locked({ waiting[id] }) {
            destination = waiter.destination
        } else if let description = downloadTask.taskDescription,
                  let info = try? JSONDecoder().decode(TaskInfo.self, from: Data(description.utf8)) {
            destination = orphanDestination(info.name, info.channel, info.version)
        } else {
            return
        }
        do {
            let fileManager = FileManager.default
            try fileManager.createDirectory(at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
            if fileManager.fileExists(atPath: destination.path) {
                _ = try fileManager.replaceItemAt(destination, withItemAt: location)
            } else {
                try fileManager.moveItem(at: location, to: destination)
            }
        } catch {
            locked { waiting[id]?.error = error }
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        guard let waiter = locked({ waiting.removeValue(forKey: task.taskIdentifier) }) else { return }
        if let failure = waiter.error ?? error.map({ Self.classify($0, object: task.originalRequest?.url?.path ?? "") }) {
            waiter.continuation.resume(throwing: failure)
        } else {
            waiter.continuation.resume()
        }
    }

    #if !os(macOS)
    func urlSessionDidFinishEvents(forBackgroundURLSession session: URLSession) {
        let handler: (() -> Void)? = locked {
            defer { backgroundCompletionHandler = nil }
            return backgroundCompletionHandler
        }
        DispatchQueue.main.async { handler?() }
    }
    #endif

    // MARK: errors

    static func httpError(_ status: Int) -> TransferError {
        switch status {
        case 404:
            return TransferError(description: "the model file does not exist (HTTP 404)", isReleaseDefect: true)
        case 401, 403:
            return TransferError(description: "refused by the Storage rules or App Check (HTTP \(status)); "
                                 + "the sign-in token may have expired", isReleaseDefect: false)
        default:
            return TransferError(description: "HTTP \(status)", isReleaseDefect: false)
        }
    }

    static func classify(_ error: Error?, object: String) -> TransferError {
        guard let error else { return TransferError(description: "download failed", isReleaseDefect: false) }
        if let transfer = error as? TransferError { return transfer }
        if let storageError = error as? StorageError, case .objectNotFound = storageError {
            return TransferError(description: "\(object) does not exist", isReleaseDefect: true)
        }
        let nsError = error as NSError
        if nsError.domain == "FIRStorageErrorDomain", nsError.code == -13010 {   // objectNotFound
            return TransferError(description: "\(object) does not exist", isReleaseDefect: true)
        }
        return TransferError(description: error.localizedDescription, isReleaseDefect: false)
    }
}

/// Resumes a continuation at most once (the Storage task may report after a cancel).
private final class ResumeOnce: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Void, Error>?

    init(_ continuation: CheckedContinuation<Void, Error>) { self.continuation = continuation }

    func resume(throwing error: Error? = nil) {
        lock.lock()
        let pending = continuation
        continuation = nil
        lock.unlock()
        if let error { pending?.resume(throwing: error) } else { pending?.resume() }
    }
}

/// Holds the Storage task for cancellation, which may arrive before the task exists.
private final class DownloadTaskBox: @unchecked Sendable {
    private let lock = NSLock()
    private var task: StorageDownloadTask?
    private var cancelled = false

    func set(_ task: StorageDownloadTask) {
        lock.lock()
        self.task = task
        let cancelNow = cancelled
        lock.unlock()
        if cancelNow { task.cancel() }
    }

    func cancel() {
        lock.lock()
        cancelled = true
        let task = self.task
        lock.unlock()
        task?.cancel()
    }
}
