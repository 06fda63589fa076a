"""Stateful control-plane services that keep their own membership rules: Galera (and, later, RabbitMQ).

``galera`` decides (pure); ``galera_node`` reads and drives one real node (grastate.dat, ``mariadbd
--wsrep-recover``, its wsrep status, starting and bootstrapping it); ``galera_recovery`` runs the
decisions against the nodes, one persisted action at a time.
"""
