package kaudit.broker;

/**
 * Allowed READ/WRITE decisions of one client on one resource, counted over a window (as
 * kaudit's gateway counts produce and fetch). Only touched inside the map's compute
 * functions, which hold the key's lock, so plain fields are safe.
 */
final class Tally {

    /** One window's count, taken when the window closes. */
    record Snapshot(Decision sample, long count, long firstMs, long lastMs) {}

    private Decision latest;
    private long count;
    private long firstMs;
    private long lastMs;

    Tally(Decision first) {
        latest = first;
    }

    Tally hit(Decision decision) {
        if (count == 0) {
            firstMs = decision.timeMs;
        }
        count++;
        lastMs = decision.timeMs;
        latest = decision;
        return this;
    }

    /** This window's count, reset for the next; null when there was none. */
    Snapshot drain() {
        if (count == 0) {
            return null;
        }
        Snapshot snapshot = new Snapshot(latest, count, firstMs, lastMs);
        count = 0;
        return snapshot;
    }
}
