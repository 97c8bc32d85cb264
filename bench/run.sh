#!/usr/bin/env bash
# make bench: every benchmark against its real peer in one run (bench/dhcp.sh, tftp.sh, http.sh,
# fleet.sh, bmc.sh; each also runs alone, as root); writes bench/results/<date>.md (fleet.sh adds
# <date>-fleet-*.csv and a PNG beside it).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=$(date -u +%Y-%m-%dT%H%MZ)
out=bench/results/$stamp.md
{
  echo "# rackboot benchmarks, $(date -u +'%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); rackboot $(git rev-parse --short HEAD 2>/dev/null || echo '?') (release build)."
  echo "Peers: $(dnsmasq --version | head -1 | cut -d' ' -f1-3); tftpd-hpa $(dpkg-query -W -f '${Version}' tftpd-hpa); atftpd $(v=$(dpkg-query -W -f '${Version}' atftpd 2>/dev/null || true); [ -n "$v" ] && echo "$v" || echo "$(apt-cache policy atftpd 2>/dev/null | awk '/Candidate:/{print $2}') (extracted from its .deb)"); nginx $(dpkg-query -W -f '${Version}' nginx-light 2>/dev/null || true); perfdhcp (kea-admin $(dpkg-query -W -f '${Version}' kea-admin)); wrk $(dpkg-query -W -f '${Version}' wrk); h2load $(dpkg-query -W -f '${Version}' nghttp2-client); hyperfine $(dpkg-query -W -f '${Version}' hyperfine); openipmi $(dpkg-query -W -f '${Version}' openipmi); ipmitool $(dpkg-query -W -f '${Version}' ipmitool)."
  echo "Ratios > 1 mean rackboot is ahead. Numbers from one run on a shared 2-core VM: expect noise."
  echo
  echo "## ProxyDHCP (perfdhcp, relayed PXE DISCOVERs, arch 7): rackboot vs dnsmasq proxy"
  echo; bench/dhcp.sh; echo
  echo "## TFTP: rackboot vs tftpd-hpa and atftpd"
  echo; bench/tftp.sh; echo
  echo "## Boot HTTP: rackboot vs nginx"
  echo; bench/http.sh; echo
  echo "## Boot storm: 100 / 500 / 1,000 simulated machines, rackboot vs dnsmasq proxy + nginx"
  echo; FLEET_OUT=bench/results FLEET_STAMP=$stamp bench/fleet.sh; echo
  echo "## BMC fleet power status: rackboot's poll vs ipmitool per BMC (ipmi_sim)"
  echo; bench/bmc.sh; echo
} | tee "$out"
echo "written: $out"
