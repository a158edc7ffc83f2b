import Foundation

/// How `getModel` trades freshness for latency (the same three as Firebase ML's ModelDownloader).
public enum ModelDownloadType: Sendable {
    /// The installed model if there is one (no network); otherwise download the newest
    /// installable release (as `.latestModel`).
    case localModel
    /// The installed model now, and look for a newer one in the background; the next call (or
    /// the `.edgeshipModelUpdated` notification) gets it.
    case localModelUpdateInBackground
    /// Look up the channel and install the newest installable release before returning.
    /// Falls back to the installed model, then the bundled one, if that fails.
    case latestModel
}

/// When a download may happen. Defaults as Firebase ML's: cellular allowed, foreground only.
public struct ModelDownloadConditions: Sendable, Hashable {
    /// May download over cellular.
    public var allowsCellularAccess: Bool
    /// May download over an expensive network (cellular, personal hotspot).
    public var allowsExpensiveNetworkAccess: Bool
    /// May download in Low Data Mode.
    public var allowsConstrainedNetworkAccess: Bool
    /// Download through a background URLSession: continues while the app is suspended, and the
    /// system waits for the allowed network. Off: the Firebase Storage SDK, in the foreground.
    public var allowsBackgroundDownloading: Bool

    public init(allowsCellularAccess: Bool = true, allowsExpensiveNetworkAccess: Bool = true,
                allowsConstrainedNetworkAccess: Bool = true, allowsBackgroundDownloading: Bool = false) {
        self.allowsCellularAccess = allowsCellularAccess
        self.allowsExpensiveNetworkAccess = allowsExpensiveNetworkAccess
        self.allowsConstrainedNetworkAccess = allowsConstrainedNetworkAccess
        self.allowsBackgroundDownloading = allowsBackgroundDownloading
    }
}

/// What happened on the last look at a channel, and why.
public struct UpdateReport: Hashable, Sendable, CustomStringConvertible {
    /// The version installed by this call, if any.
    public let installed: String?
    /// The version served.
    public let serving: String?
    public let reason: String
    /// Releases passed over, newest first, each with its reason.
    public let skipped: [SkippedRelease]

    public init(installed: String?, serving: String?, reason: String, skipped: [SkippedRelease] = []) {
        self.installed = installed
        self.serving = serving
        self.reason = reason
        self.skipped = skipped
    }

    public var description: String {
        var text = "serving \(serving ?? "nothing"): \(reason)"
        if !skipped.isEmpty { text += "; skipped " + skipped.map(\.description).joined(separator: "; ") }
        return text
    }
}

extension SkippedRelease: Hashable {
    public func hash(into hasher: inout Hasher) { hasher.combine(version); hasher.combine(reason.description) }
}

extension SkipReason: Hashable {
    public func hash(into hasher: inout Hasher) { hasher.combine(description) }
}

/// The model to give the interpreter.
public struct CustomModel: Hashable, Sendable {
    public enum Source: String, Hashable, Sendable {
        /// Installed from the channel (this call or earlier).
        case downloaded
        /// The installed model failed its check; this is the previous one that passed.
        case lastGood
        /// Shipped in the app bundle; nothing installed could be used.
        case bundled
    }

    public let name: String
    public let channel: String
    /// Release version, or the bundled model's declared version.
    public let version: String
    /// File path of the .tflite (as Firebase ML's `CustomModel.path`).
    public let path: String
    public let size: Int64
    /// Lowercase hex SHA-256 of the file.
    public let hash: String
    public let source: Source
    /// The release record it came from (nil for a bundled model).
    public let release: Release?
    /// Why this model, and which releases were passed over.
    public let report: UpdateReport

    public var url: URL { URL(fileURLWithPath: path) }

    public init(name: String, channel: String, version: String, path: String, size: Int64, hash: String,
                source: Source, release: Release?, report: UpdateReport) {
        self.name = name
        self.channel = channel
        self.version = version
        self.path = path
        self.size = size
        self.hash = hash
        self.source = source
        self.release = release
        self.report = report
    }

    public func with(report: UpdateReport) -> CustomModel {
        CustomModel(name: name, channel: channel, version: version, path: path, size: size, hash: hash,
                    source: source, release: release, report: report)
    }
}

/// A model shipped inside the app: served when nothing installed can be.
public struct BundledModel: @unchecked Sendable {  // Bundle is safe to read from any thread
    public let resource: String
    public let fileExtension: String
    public let version: String
    public let bundle: Bundle

    public init(resource: String, withExtension fileExtension: String = "tflite", version: String,
                bundle: Bundle = .main) {
        self.resource = resource
        self.fileExtension = fileExtension
        self.version = version
        self.bundle = bundle
    }

    public var url: URL? { bundle.url(forResource: resource, withExtension: fileExtension) }
}

/// An installed model, as `listDownloadedModels()` reports it.
public struct LocalModelInfo: Hashable, Sendable {
    public let name: String
    public let channel: String
    public let version: String
    public let path: String
    public let size: Int64
    public let hash: String
    public let installedAt: Date
    /// The last good version kept for fallback, if any.
    public let previousVersion: String?
}

public enum ModelDownloaderError: Error, CustomStringConvertible {
    /// Nothing installed, nothing bundled, and nothing could be installed; every reason listed.
    case noModelAvailable(name: String, channel: String, reasons: [String])
    /// The network does not meet the download conditions (and background downloading is off).
    case conditionsNotMet(String)
    /// No signed-in Firebase user and anonymous sign-in is off (the rules require a user).
    case notSignedIn
    /// The app's version is unknown (no CFBundleShortVersionString and none configured).
    case unknownAppVersion
    case download(String)
    case validation(String)
    case invalidName(String)

    public var description: String {
        switch self {
        case let .noModelAvailable(name, channel, reasons):
            return "no model for \(name)/\(channel): " + reasons.joined(separator: "; ")
        case let .conditionsNotMet(why): return "download conditions not met: \(why)"
        case .notSignedIn: return "not signed in to Firebase (the security rules require a user)"
        case .unknownAppVersion: return "the app version is unknown: set Configuration.appVersion"
        case let .download(why): return "download failed: \(why)"
        case let .validation(why): return "the model failed validation: \(why)"
        case let .invalidName(why): return why
        }
    }
}

public extension Notification.Name {
    /// Posted on the main queue after a background update installed a model; userInfo has
    /// "name", "channel", "version" and "report" (UpdateReport). Rebuild the interpreter.
    static let edgeshipModelUpdated = Notification.Name("EdgeshipModelUpdated")
}
