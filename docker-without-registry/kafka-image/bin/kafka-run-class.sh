#!/usr/bin/env bash
# Minimal kafka-run-class.sh: run CLASS with every jar of /opt/kafka/libs on the classpath.
# Honours the distribution's KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS, KAFKA_OPTS.
set -eu
class=${1:?usage: kafka-run-class.sh CLASS [ARGS...]}
shift
heap=${KAFKA_HEAP_OPTS:--Xmx256M}
# Tools start fast with the client compiler and the serial collector.
perf=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}
log4j=${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=/etc/kafka/docker/tools-log4j2.properties}
# shellcheck disable=SC2086
exec java $heap $perf $log4j ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' "$class" "$@"
