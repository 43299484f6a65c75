"""``vipmon bootstrap``: the files that make bare hosts a secured vipmon cluster.

A generator: it writes files and starts nothing. :mod:`~app.bootstrap.plan` is the
topology and its validation, :mod:`~app.bootstrap.pki` the CA and certificates,
:mod:`~app.bootstrap.files` the text of each file (etcd's config, ``vipmon.toml``,
the systemd units, ``install.sh``), :mod:`~app.bootstrap.bundle` writes the
directories, and :mod:`~app.bootstrap.auth` is the one step run against the live
cluster: etcd's users, role and ``auth enable``.
"""
