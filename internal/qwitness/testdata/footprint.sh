#!/bin/bash
# Footprint of a witness next to two agents (docs/quorum.md): starts two
# `paceline agent`s (bootstrapExpect 3) and a `paceline witness` on 127.x
# loopback addresses derived from the PID, waits until the witness votes, idles
# IDLE seconds (default 60) and prints RSS and CPU of each process from /proc.
# Usage: go build -o /tmp/paceline ./cmd/paceline && BIN=/tmp/paceline internal/qwitness/testdata/footprint.sh
set -u
BIN=${BIN:-paceline}
D=/dev/shm/wfig-$$; rm -rf $D; mkdir -p $D
P=$$; A=$((1 + P % 250)); B=$(((P / 250) % 250))
IP1=127.$A.$B.21; IP2=127.$A.$B.22; IP3=127.$A.$B.23
echo tok-$$ > $D/join.token
for i in 1 2; do
  ip=127.$A.$B.2$i
  cat > $D/n$i.yaml <<Y
nodeName: n$i
clusterName: fig
bindAddr: $ip
dataDir: $D/n$i
join: [$IP1:7480, $IP2:7480]
bootstrapExpect: 3
joinTokenFile: $D/join.token
agents: {rscTmp: $D/n$i/rsctmp}
Y
  $BIN agent --config $D/n$i.yaml 2> $D/n$i.log & echo $! > $D/n$i.pid
done
cat > $D/w.yaml <<Y
nodeName: w1
clusterName: fig
bindAddr: $IP3
dataDir: $D/w1
join: [$IP1:7480, $IP2:7480]
joinTokenFile: $D/join.token
Y
$BIN witness --config $D/w.yaml 2> $D/w.log & echo $! > $D/w.pid
for t in $(seq 1 100); do
  out=$(PACELINE_ADDR=$IP1:7480 PACELINE_TOKEN_FILE=$(ls $D/n*/operator.token 2>/dev/null | head -1) $BIN node list 2>/dev/null)
  st=$(PACELINE_ADDR=$IP1:7480 PACELINE_TOKEN_FILE=$(ls $D/n*/operator.token 2>/dev/null | head -1) $BIN status 2>/dev/null | head -1)
  if echo "$out" | grep -q "witness.*voting" && echo "$st" | grep -q "leader n"; then break; fi
  sleep 0.2
done
echo "$out"
PACELINE_ADDR=$IP1:7480 PACELINE_TOKEN_FILE=$(ls $D/n*/operator.token | head -1) $BIN status | head -8
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
declare -A c0
for n in n1 n2 w; do c0[$n]=$(cpu $(cat $D/$n.pid)); done
sleep ${IDLE:-60}
hz=$(getconf CLK_TCK)
for n in n1 n2 w; do
  pid=$(cat $D/$n.pid)
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  c1=$(cpu $pid)
  echo "$n pid=$pid rss_kb=$rss cpu_ms_per_min=$(( (c1 - ${c0[$n]}) * 1000 / hz * 60 / ${IDLE:-60} ))"
done
echo "witness elections won: $(grep -c 'witness won an election' $D/w.log)"
for n in w n2 n1; do kill -TERM $(cat $D/$n.pid); done
for n in w n2 n1; do wait $(cat $D/$n.pid) 2>/dev/null; done
[ -n "${KEEP:-}" ] && { echo "logs kept in $D"; exit 0; }; rm -rf $D
