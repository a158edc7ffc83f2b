import EdgeshipModelCore
import Foundation
import Network

enum NetworkConditions {
    /// The current network path, once (NWPathMonitor delivers the current path right after start).
    static func currentPath() async -> NWPath {
        await withCheckedContinuation { continuation in
            let monitor = NWPathMonitor()
            let first = FirstPath(continuation)
            monitor.pathUpdateHandler = { path in
                if first.deliver(path) { monitor.cancel() }
            }
            monitor.start(queue: DispatchQueue(label: "dev.edgeship.model-downloader.path"))
        }
    }

    /// nil when a foreground download may start now, else why not.
    static func unmet(_ conditions: ModelDownloadConditions) async -> String? {
        let path = await currentPath()
        if path.status != .satisfied { return "no network" }
        if !conditions.allowsCellularAccess, path.usesInterfaceType(.cellular) { return "on cellular" }
        if !conditions.allowsExpensiveNetworkAccess, path.isExpensive { return "on an expensive network" }
        if !conditions.allowsConstrainedNetworkAccess, path.isConstrained { return "in Low Data Mode" }
        return nil
    }
}

/// Resumes with the first path only (the handler keeps firing until the monitor is cancelled).
private final class FirstPath: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<NWPath, Never>?

    init(_ continuation: CheckedContinuation<NWPath, Never>) { self.continuation = continuation }

    /// true the first time.
    func deliver(_ path: NWPath) -> Bool {
        lock.lock()
        let pending = continuation
        continuation = nil
        lock.unlock()
        pending?.resume(returning: path)
        return pending != nil
    }
}
