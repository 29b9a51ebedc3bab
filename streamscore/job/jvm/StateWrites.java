package streamscore.flink;

import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.runtime.state.KeyedStateBackend;
import org.apache.flink.runtime.state.VoidNamespace;
import org.apache.flink.types.Row;

import org.rocksdb.ColumnFamilyHandle;
import org.rocksdb.FlushOptions;
import org.rocksdb.RocksDB;

import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/**
 * The scoring operator's keyed-state writes and its join-map walks, many users per call.
 *
 * <p>From Python, in thread mode, each switch of the current key, each value write and each
 * map entry written or read is a call into the JVM with its argument conversions. The operator
 * keeps its state changes in Python between checkpoint barriers and writes them all before a
 * barrier. Here that whole write-out is one call, with the values already pickled by Python, so
 * nothing but the state backend's own work is done per write. (Measured, the calls were a small
 * part of the write-out: pickling and RocksDB's writes are most of it; see state_writes.py.)
 *
 * <p>It acts on the Java state objects behind the Python operator's own keyed states, so what it
 * writes is what the Python state API would have written: the same state names, serializers and
 * bytes. Keys are rows of one string, as the job's key selector makes them. A call leaves
 * Flink's current key at the last user it wrote: the caller must not assume its own.
 *
 * <p>{@link #write} takes, per user, big-endian: user length (int) and UTF-8 bytes; the user's
 * pickled value (length, or -1 for no change, -2 to clear it, then the bytes); the number of
 * changed join entries, then per entry its event id (length and UTF-8 bytes) and its pickled
 * entry (length, or -1 to remove it, then the bytes).
 */
public class StateWrites {

    private static final int UNCHANGED = -1;
    private static final int CLEARED = -2;

    private KeyedStateBackend<Row> backend;
    private ValueState<byte[]> users;
    private MapState<String, byte[]> joinEntries;

    private byte[] packed;
    private int at;

    /** The backend's RocksDB and its column families, for {@link #startFlush}; null if none. */
    private RocksDB db;
    private List<ColumnFamilyHandle> families;
    private FlushOptions noWait;
    private boolean flushUnavailable;

    /**
     * Made by reflection ({@code Class.newInstance}) from Python, which reaches this class only
     * through the job's class loader, as a class object it cannot call; then {@link #bind}.
     */
    public StateWrites() {}

    /** The operator's keyed state backend, its users' value state and its join map state. */
    @SuppressWarnings("unchecked")
    public void bind(Object backend, Object users, Object joinEntries) {
        this.backend = (KeyedStateBackend<Row>) backend;
        this.users = (ValueState<byte[]>) users;
        this.joinEntries = (MapState<String, byte[]>) joinEntries;
    }

    /**
     * Starts a flush of RocksDB's memtables in RocksDB's background threads and returns at once.
     * An incremental checkpoint's synchronous part flushes the memtables and waits for that on
     * the task's thread, holding up every record behind the barrier; flushed ahead, what is left
     * for it is only what was written since. False when the backend is not RocksDB's (the
     * changelog backend, the heap) or its database cannot be reached.
     */
    public boolean startFlush() throws Exception {
        if (flushUnavailable) {
            return false;
        }
        if (db == null && !findDatabase()) {
            flushUnavailable = true;
            return false;
        }
        db.flush(noWait, families);
        return true;
    }

    @SuppressWarnings("unchecked")
    private boolean findDatabase() {
        try {
            Object database = field(backend, "db");
            Object states = field(backend, "kvStateInformation");
            if (!(database instanceof RocksDB) || !(states instanceof Map)) {
                return false;
            }
            List<ColumnFamilyHandle> handles = new ArrayList<>();
            for (Object info : ((Map<String, Object>) states).values()) {
                handles.add((ColumnFamilyHandle) field(info, "columnFamilyHandle"));
            }
            families = handles;
            noWait = new FlushOptions().setWaitForFlush(false).setAllowWriteStall(true);
            db = (RocksDB) database;
            return true;
        } catch (ReflectiveOperationException | RuntimeException e) {
            return false;
        }
    }

    private static Object field(Object owner, String name) throws ReflectiveOperationException {
        for (Class<?> c = owner.getClass(); c != null; c = c.getSuperclass()) {
            try {
                Field f = c.getDeclaredField(name);
                f.setAccessible(true);
                return f.get(owner);
            } catch (NoSuchFieldException e) {
                // look in the superclass
            }
        }
        throw new NoSuchFieldException(name);
    }

    /** Applies the packed writes (see the class comment); returns how many users it wrote. */
    public int write(byte[] packed) throws Exception {
        this.packed = packed;
        this.at = 0;
        int written = 0;
        while (at < packed.length) {
            backend.setCurrentKey(Row.of(readString()));
            int valueLength = readInt();
            if (valueLength == CLEARED) {
                users.clear();
            } else if (valueLength != UNCHANGED) {
                users.update(readBytes(valueLength));
            }
            int entries = readInt();
            for (int i = 0; i < entries; i++) {
                String eventId = readString();
                int entryLength = readInt();
                if (entryLength == UNCHANGED) {
                    joinEntries.remove(eventId);
                } else {
                    joinEntries.put(eventId, readBytes(entryLength));
                }
            }
            written++;
        }
        this.packed = null;
        return written;
    }

    /**
     * The join entries of {@code user} (made the current key), packed as per entry: event id
     * (length and UTF-8 bytes) and pickled entry (length and bytes). One call instead of one per
     * entry and field.
     */
    public byte[] joinEntriesOf(String user) throws Exception {
        backend.setCurrentKey(Row.of(user));
        Iterable<Map.Entry<String, byte[]>> entries = joinEntries.entries();
        if (entries == null) {
            return new byte[0];
        }
        byte[] out = new byte[256];
        int size = 0;
        for (Iterator<Map.Entry<String, byte[]>> it = entries.iterator(); it.hasNext(); ) {
            Map.Entry<String, byte[]> entry = it.next();
            byte[] eventId = entry.getKey().getBytes(StandardCharsets.UTF_8);
            byte[] value = entry.getValue();
            int needed = size + 8 + eventId.length + value.length;
            if (needed > out.length) {
                out = Arrays.copyOf(out, Math.max(needed, 2 * out.length));
            }
            size = putInt(out, size, eventId.length);
            System.arraycopy(eventId, 0, out, size, eventId.length);
            size += eventId.length;
            size = putInt(out, size, value.length);
            System.arraycopy(value, 0, out, size, value.length);
            size += value.length;
        }
        return Arrays.copyOf(out, size);
    }

    /**
     * Every user that has a value in the keyed value state named {@code stateName}, in this
     * subtask's key groups, packed as per user: its length and UTF-8 bytes. One call, made once
     * when the operator opens, so that it knows which users have state without asking RocksDB
     * for each new one (state.KnownUsers). Does not change the current key.
     */
    public byte[] userKeys(String stateName) throws Exception {
        byte[] out = new byte[4096];
        int size = 0;
        try (Stream<Row> keys = backend.getKeys(stateName, VoidNamespace.INSTANCE)) {
            for (Iterator<Row> it = keys.iterator(); it.hasNext(); ) {
                byte[] user = ((String) it.next().getField(0)).getBytes(StandardCharsets.UTF_8);
                int needed = size + 4 + user.length;
                if (needed > out.length) {
                    out = Arrays.copyOf(out, Math.max(needed, 2 * out.length));
                }
                size = putInt(out, size, user.length);
                System.arraycopy(user, 0, out, size, user.length);
                size += user.length;
            }
        }
        return Arrays.copyOf(out, size);
    }

    private static int putInt(byte[] out, int at, int value) {
        out[at] = (byte) (value >>> 24);
        out[at + 1] = (byte) (value >>> 16);
        out[at + 2] = (byte) (value >>> 8);
        out[at + 3] = (byte) value;
        return at + 4;
    }

    private int readInt() {
        int value = ((packed[at] & 0xff) << 24)
                | ((packed[at + 1] & 0xff) << 16)
                | ((packed[at + 2] & 0xff) << 8)
                | (packed[at + 3] & 0xff);
        at += 4;
        return value;
    }

    private String readString() {
        int length = readInt();
        String value = new String(packed, at, length, StandardCharsets.UTF_8);
        at += length;
        return value;
    }

    private byte[] readBytes(int length) {
        byte[] value = Arrays.copyOfRange(packed, at, at + length);
        at += length;
        return value;
    }
}
