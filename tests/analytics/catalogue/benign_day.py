"""A day in the life of a small fleet, with nothing wrong in it: the catalogue must stay quiet.

Four Raspberry Pi-class gateways run a Python sensor service, Mosquitto in Docker, a small
nginx/PHP status page, cron, apt's daily timers and logrotate; an administrator signs in with
an SSH key now and then and looks around; Internet scanners try a password or two; the hub
logs connections and telemetry. Everything is generated from a fixed seed, so the stream is
the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from iotsec.analytics import DeviceContext, Observation

DAY_START = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
DEVICES = ("gw-01", "gw-02", "gw-03", "gw-04")
ADMIN_HOST = "10.0.0.5"

# Programs systemd starts at boot.
_BOOT = [
    ("/lib/systemd/systemd-journald", "/lib/systemd/systemd-journald"),
    ("/lib/systemd/systemd-udevd", "/lib/systemd/systemd-udevd"),
    ("/lib/systemd/systemd-timesyncd", "/lib/systemd/systemd-timesyncd"),
    ("/sbin/auditd", "/sbin/auditd"),
    ("/sbin/augenrules", "/sbin/augenrules --load"),
    ("/sbin/auditctl", "/sbin/auditctl -R /etc/audit/audit.rules"),
    ("/usr/sbin/cron", "/usr/sbin/cron -f"),
    ("/usr/sbin/sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups"),
    ("/usr/sbin/nginx", "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;"),
    ("/usr/sbin/php-fpm8.2", "php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"),
    ("/usr/bin/containerd", "/usr/bin/containerd"),
    ("/usr/bin/dockerd", "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"),
    ("/sbin/agetty", "/sbin/agetty -o -p -- \\u --noclear tty1 linux"),
    ("/usr/sbin/netfilter-persistent", "/usr/sbin/netfilter-persistent start"),
    ("/usr/sbin/iptables-restore", "iptables-restore -n /etc/iptables/rules.v4"),
    ("/usr/bin/python3", "/usr/bin/python3 /opt/sensor/main.py --config /etc/sensor/config.yaml"),
    ("/usr/local/bin/iotsec-agent", "/usr/local/bin/iotsec-agent --config /etc/iotsec/agent.toml"),
]

# What cron and systemd timers run during the day: (minute of the hour or None, command).
_HOURLY = [
    ("/usr/sbin/cron", "/usr/sbin/CRON -f -P"),
    ("/bin/sh", "/bin/sh -c    cd / && run-parts --report /etc/cron.hourly"),
    ("/bin/run-parts", "run-parts --report /etc/cron.hourly"),
]
_EVERY_15_MIN = [
    (
        "/usr/bin/curl",
        "curl -fsS --max-time 10 https://updates.example.com/v1/manifest.json "
        "-o /var/lib/sensor/manifest.json",
    ),
    ("/bin/sh", 'sh -c "curl -fsS http://127.0.0.1:8080/health | grep -q ok"'),
    ("/usr/bin/curl", "curl -fsS http://127.0.0.1:8080/health"),
    ("/usr/bin/systemctl", "systemctl is-active --quiet sensor.service"),
    ("/usr/bin/vcgencmd", "vcgencmd measure_temp"),
]
_DAILY = [
    (
        "/bin/sh",
        "/bin/sh -c test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )",
    ),
    ("/usr/sbin/logrotate", "/usr/sbin/logrotate /etc/logrotate.conf"),
    ("/bin/gzip", "/bin/gzip /var/log/syslog.1"),
    ("/usr/bin/find", 'find /var/log -name "*.gz" -mtime +14 -delete'),
    ("/usr/bin/find", "find /tmp -type f -atime +10 -delete"),
    ("/usr/bin/apt-get", "apt-get -qq update"),
    ("/usr/lib/apt/methods/http", "/usr/lib/apt/methods/http"),
    ("/usr/bin/dpkg", "/usr/bin/dpkg --print-foreign-architectures"),
    ("/usr/bin/python3", "/usr/bin/python3 /usr/bin/unattended-upgrade"),
    ("/usr/bin/dpkg", "/usr/bin/dpkg --status-fd 3 --configure --pending"),
    ("/usr/bin/mandb", "/usr/bin/mandb --quiet"),
    (
        "/usr/sbin/fstrim",
        "/sbin/fstrim --listed-in /etc/fstab:/proc/self/mountinfo --verbose --quiet-unsupported",
    ),
    ("/usr/bin/tar", "tar czf /var/backups/etc-2025-03-03.tgz /etc"),
    ("/bin/rm", "rm -f /var/backups/etc-2025-02-24.tgz"),
    ("/bin/sh", "sh -c \"tar czf - /var/lib/sensor | ssh backup@10.0.0.20 'cat > sensor.tgz'\""),
    ("/usr/bin/ssh", "ssh backup@10.0.0.20 cat > sensor.tgz"),
]
# An administrator's session: what a person typing on the device runs.
_ADMIN = [
    ("/usr/bin/uptime", "uptime"),
    ("/usr/bin/df", "df -h"),
    ("/usr/bin/free", "free -m"),
    ("/usr/bin/uname", "uname -a"),
    ("/usr/bin/cat", "cat /etc/os-release"),
    ("/usr/bin/journalctl", "journalctl -u sensor --since today --no-pager"),
    ("/usr/bin/systemctl", "systemctl status sensor"),
    ("/usr/bin/systemctl", "systemctl status auditd"),
    ("/usr/bin/sudo", "sudo systemctl restart sensor"),
    ("/usr/bin/systemctl", "systemctl restart sensor"),
    ("/usr/sbin/iptables", "iptables -L -n -v"),
    ("/usr/sbin/ufw", "ufw status verbose"),
    ("/usr/bin/tail", "tail -n 100 /var/log/syslog"),
    ("/usr/bin/docker", "docker ps"),
    ("/usr/bin/docker", "docker logs --tail 50 broker"),
    ("/usr/bin/top", "top -bn1"),
    ("/usr/bin/vim", "vim /etc/sensor/config.yaml"),
    ("/usr/bin/git", "git -C /opt/sensor pull --ff-only"),
    ("/usr/bin/python3", "python3 -m pip install --user --upgrade paho-mqtt"),
    ("/usr/bin/ls", "ls -la /var/log"),
    ("/usr/bin/grep", "grep -i error /var/log/syslog"),
    ("/usr/bin/ps", "ps aux"),
    ("/usr/bin/ss", "ss -tlnp"),
    ("/usr/bin/ping", "ping -c 3 10.0.0.1"),
    ("/usr/bin/nc", "nc -z -w 2 10.0.0.20 22"),
    ("/usr/bin/ssh", "ssh -i /home/pi/.ssh/id_ed25519 pi@10.0.0.12 uptime"),
    ("/usr/bin/scp", "scp /var/lib/sensor/export.csv backup@10.0.0.20:/srv/exports/"),
    ("/usr/bin/id", "id"),
    ("/usr/bin/groups", "groups pi"),
    ("/usr/bin/getent", "getent passwd pi"),
    ("/usr/bin/openssl", "openssl x509 -in /etc/iotsec/device.pem -noout -enddate"),
    ("/usr/bin/base64", "base64 -d /etc/iotsec/cert.b64"),
]
_WEB = [
    ("/usr/sbin/nginx", "nginx: worker process"),
    ("/usr/sbin/php-fpm8.2", "php-fpm: pool www"),
    ("/bin/sh", "sh -c /usr/sbin/sendmail -t -i "),
    ("/usr/sbin/sendmail", "/usr/sbin/sendmail -t -i"),
]
_CONTAINERS = [
    ("/usr/bin/docker", "docker pull eclipse-mosquitto:2"),
    (
        "/usr/bin/docker",
        "docker run -d --name broker --restart unless-stopped -p 1883:1883 "
        "-v /srv/mosquitto:/mosquitto/data eclipse-mosquitto:2",
    ),
    (
        "/usr/bin/docker-proxy",
        "/usr/bin/docker-proxy -proto tcp -host-ip 0.0.0.0 -host-port 1883 "
        "-container-ip 172.17.0.2 -container-port 1883",
    ),
    (
        "/usr/sbin/iptables",
        "/usr/sbin/iptables --wait -t nat -A DOCKER -p tcp -d 0/0 --dport 1883 "
        "-j DNAT --to-destination 172.17.0.2:1883 ! -i docker0",
    ),
    ("/usr/sbin/iptables", "/usr/sbin/iptables --wait -t nat -F DOCKER"),
    ("/usr/sbin/iptables", "/usr/sbin/iptables --wait -F DOCKER-ISOLATION-STAGE-1"),
]


class _Stream:
    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.serial = 0

    def observation(
        self, device: str, at: datetime, name: str, fields: dict[str, object], *, hub: bool = False
    ) -> Observation:
        self.serial += 1
        return Observation(
            source="hub" if hub else "agent",
            name=name,
            time=at,
            device=DeviceContext(device, group="gateways"),
            fields=fields,
            event_id=f"benign-{self.serial}",
            category="Connections" if hub else "Triggered",
            event_type="Hub" if hub else "Security",
        )

    def process(
        self, device: str, at: datetime, exe: str, cmd: str, user: str = "root"
    ) -> Observation:
        uid = {"root": "0", "pi": "1000", "www-data": "33", "backup": "34"}.get(user, "999")
        pid = self.random.randint(300, 60000)
        return self.observation(
            device,
            at,
            "ProcessCreate",
            {
                "Executable": exe,
                "ProcessId": pid,
                "ParentProcessId": self.random.randint(1, pid),
                "UserId": uid,
                "UserName": user,
                "CommandLine": cmd,
            },
        )

    def connection(
        self, device: str, at: datetime, exe: str, cmd: str, remote: str, port: str, direction: str
    ) -> Observation:
        return self.observation(
            device,
            at,
            "ConnectionCreate",
            {
                "Executable": exe,
                "CommandLine": cmd,
                "ProcessId": 0,
                "RemoteAddress": remote,
                "RemotePort": port if direction == "Out" else "",
                "LocalPort": "22" if direction == "In" else "",
                "Direction": direction,
                "Protocol": "tcp",
            },
        )

    def jitter(self, seconds: int = 50) -> timedelta:
        return timedelta(seconds=self.random.randint(0, seconds))


def benign_day(seed: int = 20250303) -> list[Observation]:
    """The day's observations for the whole fleet, in time order."""
    stream = _Stream(seed)
    out: list[Observation] = []
    for index, device in enumerate(DEVICES):
        out.extend(_device_day(stream, device, index))
    out.extend(_hub_day(stream))
    out.sort(key=lambda o: (o.time, o.event_id))
    return out


def _device_day(s: _Stream, device: str, index: int) -> Iterator[Observation]:
    boot = DAY_START + timedelta(minutes=3 + index)
    for offset, (exe, cmd) in enumerate(_BOOT):
        yield s.process(device, boot + timedelta(seconds=offset), exe, cmd)
    for offset, (exe, cmd) in enumerate(_CONTAINERS):
        yield s.process(device, boot + timedelta(seconds=40 + offset), exe, cmd)
    for hour in range(24):
        top = DAY_START + timedelta(hours=hour)
        for offset, (exe, cmd) in enumerate(_HOURLY):
            yield s.process(device, top + timedelta(minutes=17, seconds=offset), exe, cmd)
        for quarter in range(4):
            at = top + timedelta(minutes=15 * quarter) + s.jitter()
            for offset, (exe, cmd) in enumerate(_EVERY_15_MIN):
                yield s.process(device, at + timedelta(seconds=offset), exe, cmd)
            yield s.connection(
                device, at, "/usr/bin/curl", _EVERY_15_MIN[0][1], "93.184.216.34", "443", "Out"
            )
        yield s.connection(
            device,
            top + s.jitter(600),
            "/usr/bin/python3",
            _BOOT[15][1],
            "52.0.10.20",
            "8883",
            "Out",
        )
        yield s.connection(
            device,
            top + s.jitter(600),
            "/lib/systemd/systemd-timesyncd",
            "/lib/systemd/systemd-timesyncd",
            "162.159.200.1",
            "123",
            "Out",
        )
        if hour % 3 == 0:
            yield from _web_hit(s, device, top + s.jitter(3000))
        if hour % 6 == 0:
            yield from _snapshots(s, device, top + timedelta(minutes=42))
    daily = DAY_START + timedelta(hours=6, minutes=25)
    for offset, (exe, cmd) in enumerate(_DAILY):
        user = "backup" if "backup@" in cmd else "root"
        yield s.process(device, daily + timedelta(seconds=20 * offset), exe, cmd, user)
    yield from _apt_connections(s, device, daily)
    for session in range(2 + index % 2):
        yield from _admin_session(
            s, device, DAY_START + timedelta(hours=9 + 4 * session, minutes=index * 7)
        )
    yield from _scanner(s, device, DAY_START + timedelta(hours=2 + 5 * index))


def _admin_session(s: _Stream, device: str, start: datetime) -> Iterator[Observation]:
    yield s.connection(device, start, "/usr/sbin/sshd", "sshd: pi [priv]", ADMIN_HOST, "", "In")
    yield s.observation(
        device,
        start + timedelta(seconds=1),
        "Login",
        {
            "ProcessId": s.random.randint(1000, 9000),
            "UserName": "pi",
            "UserId": "1000",
            "Operation": "sshd:publickey",
            "Executable": "/usr/sbin/sshd",
            "RemoteAddress": ADMIN_HOST,
            "RemotePort": str(s.random.randint(40000, 60000)),
            "Result": "Success",
        },
    )
    commands = s.random.sample(_ADMIN, 12)
    at = start + timedelta(seconds=5)
    for exe, cmd in commands:
        at += s.jitter(40) + timedelta(seconds=3)
        user = "root" if cmd.startswith(("systemctl restart", "iptables", "ufw")) else "pi"
        yield s.process(device, at, exe, cmd, user)


def _web_hit(s: _Stream, device: str, at: datetime) -> Iterator[Observation]:
    for offset, (exe, cmd) in enumerate(_WEB):
        yield s.process(device, at + timedelta(seconds=offset), exe, cmd, "www-data")


def _apt_connections(s: _Stream, device: str, at: datetime) -> Iterator[Observation]:
    for offset, remote in enumerate(("151.101.2.132", "151.101.66.132", "93.93.128.193")):
        yield s.connection(
            device,
            at + timedelta(seconds=100 + offset),
            "/usr/lib/apt/methods/http",
            "/usr/lib/apt/methods/http",
            remote,
            "80",
            "Out",
        )


def _scanner(s: _Stream, device: str, at: datetime) -> Iterator[Observation]:
    """An Internet scanner tries a few passwords, well under the brute-force threshold."""
    address = f"203.0.113.{s.random.randint(100, 200)}"
    for attempt in range(3):
        yield s.observation(
            device,
            at + timedelta(seconds=4 * attempt),
            "Login",
            {
                "ProcessId": s.random.randint(1000, 9000),
                "UserName": s.random.choice(["admin", "root", "ubnt", "nmap-reports"]),
                "Operation": "sshd:password",
                "Executable": "/usr/sbin/sshd",
                "RemoteAddress": address,
                "RemotePort": str(s.random.randint(40000, 60000)),
                "Result": "Fail",
            },
        )


def _snapshots(s: _Stream, device: str, at: datetime) -> Iterator[Observation]:
    listening = [
        ("0.0.0.0", "22", "/usr/sbin/sshd"),
        ("0.0.0.0", "80", "/usr/sbin/nginx"),
        ("0.0.0.0", "1883", "/usr/bin/docker-proxy"),
        ("127.0.0.1", "9000", "/usr/sbin/php-fpm8.2"),
        ("127.0.0.1", "8080", "/usr/bin/python3"),
    ]
    for address, port, exe in listening:
        yield s.observation(
            device,
            at,
            "ListeningPorts",
            {
                "Protocol": "TCP",
                "LocalAddress": address,
                "LocalPort": port,
                "RemoteAddress": "0.0.0.0",
                "RemotePort": "*",
                "ExtraDetails": {"Pid": str(s.random.randint(300, 900)), "Executable": exe},
            },
        )
    for name, uid, groups in (("root", "0", "root"), ("pi", "1000", "pi;adm;sudo;video;gpio")):
        yield s.observation(
            device,
            at,
            "LocalUsers",
            {"UserName": name, "UserId": uid, "GroupNames": groups, "GroupIds": "0"},
        )
    for priority, (chain, action) in enumerate((("INPUT", "Deny"), ("OUTPUT", "Allow"))):
        yield s.observation(
            device,
            at,
            "FirewallConfiguration",
            {"Enabled": True, "Action": action, "Priority": priority, "ChainName": chain},
        )
    yield s.observation(
        device,
        at,
        "SystemInformation",
        {"OSName": "Linux", "OSVersion": "6.6.20 #1 SMP", "HostName": device},
    )
    yield s.observation(
        device,
        at,
        "ConfigurationError",
        {
            "ConfigurationName": "maxMessageSizeInBytes",
            "ErrorType": "NotOptimal",
            "UsedConfiguration": "200000",
            "Message": "Message size should be multiple of 4096",
        },
    )


def _hub_day(s: _Stream) -> Iterator[Observation]:
    for index, device in enumerate(DEVICES):
        source = f"10.0.1.{10 + index}"
        yield s.observation(
            device,
            DAY_START + timedelta(minutes=4 + index),
            "connect",
            {
                "Category": "Connections",
                "Result": "Success",
                "Protocol": "mqtt",
                "SourceIp": source,
                "Properties": {"method": "sas"},
            },
            hub=True,
        )
        for hour in range(24):
            yield s.observation(
                device,
                DAY_START + timedelta(hours=hour, minutes=59),
                "d2c",
                {
                    "Category": "DeviceTelemetry",
                    "Result": "Success",
                    "Protocol": "mqtt",
                    "SourceIp": source,
                    "Properties": {"count": "60", "bytes": "245760"},
                },
                hub=True,
            )
        yield s.observation(
            device,
            DAY_START + timedelta(hours=12),
            "updateTwin",
            {
                "Category": "C2DTwinOperations",
                "Result": "Success",
                "Protocol": "service",
                "SourceIp": "10.0.0.5",
                "Properties": {"policy": "service"},
            },
            hub=True,
        )
