# -*- coding: utf-8 -*-
# Copyright (c) gitops.rollback contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by the database modules."""

    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The database engine. V(mysql) covers MariaDB and MySQL; V(mariadb) is another name of V(mysql) (the
        results, the checkpoint's components and the plans name the engine V(mysql)).
    type: str
    required: true
    choices: [postgresql, mysql, sqlite, mariadb]
  database:
    description:
      - The database name, or for V(sqlite) the path of the database file.
    type: str
    required: true
    aliases: [db, name]
  login_host:
    description:
      - Host name or address of the server. Not used for V(sqlite).
    type: str
    aliases: [host]
  login_port:
    description:
      - TCP port of the server.
    type: int
    aliases: [port]
  login_user:
    description:
      - User to connect as.
    type: str
    aliases: [user]
  login_password:
    description:
      - Password of O(login_user). It is passed to the client through the environment
        (PostgreSQL) or a defaults file written with mode 0600 and removed afterwards
        (MariaDB/MySQL), never on a command line or in a log.
      - When not set, the client's own files (C(~/.pgpass), C(~/.my.cnf)) and environment apply.
    type: str
    aliases: [password]
  login_unix_socket:
    description:
      - Directory (PostgreSQL) or socket file (MariaDB/MySQL) of a local server.
    type: path
    aliases: [unix_socket]
  client_bin_dir:
    description:
      - Directory holding the client programs (C(pg_dump), C(pg_restore), C(psql),
        C(mariadb-dump)/C(mysqldump), C(mariadb)/C(mysql)). Default is to search E(PATH).
    type: path
  client_charset:
    description:
      - MariaDB/MySQL. Character set of every client connection (C(--default-character-set)), so
        text in migrations and queries is read as written whatever the host's option files and
        locale say. Backups and restores dump and load in C(utf8mb4) and binary, whatever this says.
    type: str
    default: utf8mb4
"""
