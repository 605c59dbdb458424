# Sourced by the scripts that need a throwaway PostgreSQL server:
# `start_postgres` initialises one in a temporary directory, starts it on a
# free port of 127.0.0.1 (trust authentication, user `nxmesh`) and sets
# PGBIN, PGDIR, PGPORT and as_pg (the prefix that runs a command as the
# server's owner); `stop_postgres` stops it and removes the directory.

start_postgres() {
    PGBIN=$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -1)
    PGDIR=$(mktemp -d /tmp/nxmesh-pg.XXXXXX)
    PGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg=()
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses to run as root.
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chown postgres "$PGDIR"
        as_pg=(runuser -u postgres --)
    fi
    "${as_pg[@]}" "$PGBIN/initdb" -D "$PGDIR/data" -U nxmesh --auth=trust -E UTF8 >"$PGDIR/initdb.log"
    "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w \
        -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
}

stop_postgres() {
    "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PGDIR"
}
