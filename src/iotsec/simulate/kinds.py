"""The device kinds of the demo fleet, and the site network they live on.

Addresses: devices sit in ``10.30.<site>.0/24``; site services (MQTT broker, NTP and DNS on the
router, NVR, syslog, backup, Prometheus) in ``10.20.0.0/24``; field devices (PLCs) in
``10.40.0.0/24``; administrators connect from the management network ``10.10.0.0/24``. The few
public peers are package mirrors and a firmware CDN. Attack scenarios use the documentation
ranges (RFC 5737), which no benign event ever touches.
"""

from __future__ import annotations

from datetime import timedelta

from iotsec.simulate.profile import (
    Account,
    AttackSurface,
    BaselineCheck,
    Chatter,
    DeviceProfile,
    FirewallRule,
    Job,
    Listener,
    LoginHabits,
    OsInfo,
    Service,
    Step,
)

__all__ = [
    "ADMIN_WORKSTATIONS",
    "ANY",
    "ANY6",
    "BROKER",
    "MANAGEMENT_SUBNET",
    "PROFILES",
    "PUBLIC_PEERS",
    "ROUTER",
    "SITE_SERVICES_SUBNET",
]

MANAGEMENT_SUBNET = "10.10.0.0/24"
#: One administrators' workstation per site (see ``iotsec.simulate.fleet.SITES``).
ADMIN_WORKSTATIONS = ("10.10.0.21", "10.10.0.22", "10.10.0.23")
SITE_SERVICES_SUBNET = "10.20.0.0/24"
ROUTER = "10.20.0.1"  # NTP and DNS
BROKER = "10.20.0.10"
NVR = "10.20.0.30"
SYSLOG = "10.20.0.40"
BACKUP = "10.20.0.50"
PROMETHEUS = "10.20.0.60"
PLCS = ("10.40.0.11", "10.40.0.12")
DEBIAN_MIRROR = "151.101.2.132"  # deb.debian.org (a CDN address)
UBUNTU_MIRROR = "91.189.91.83"  # archive.ubuntu.com
FIRMWARE_CDN = "104.18.32.7"
#: Every public address benign traffic reaches.
PUBLIC_PEERS = (DEBIAN_MIRROR, UBUNTU_MIRROR, FIRMWARE_CDN)

# Addresses a simulated daemon listens on: data about a device, not a socket we open.
ANY = "0.0.0.0"  # noqa: S104
ANY6 = "::"
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
_NOGROUP = ("nogroup", 65534)


def _system(name: str, uid: int, group: tuple[str, int] | None = None) -> Account:
    return Account(name, uid, (group or (name, uid),))


_DEBIAN_BASE = (
    Account("root", 0, (("root", 0),)),
    _system("daemon", 1),
    _system("bin", 2),
    _system("sys", 3),
    Account("sync", 4, (_NOGROUP,)),
    Account("games", 5, (("games", 60),)),
    Account("man", 6, (("man", 12),)),
    _system("lp", 7),
    _system("mail", 8),
    _system("news", 9),
    _system("uucp", 10),
    _system("proxy", 13),
    _system("www-data", 33),
    _system("backup", 34),
    _system("list", 38),
    _system("irc", 39),
    Account("_apt", 42, (_NOGROUP,)),
    Account("nobody", 65534, (_NOGROUP,)),
    Account("systemd-network", 998, (("systemd-network", 998),)),
    Account("messagebus", 100, (("messagebus", 107),)),
)

_SSH_CHECKS = (
    BaselineCheck(
        "CCE-4030-3", "IgnoreRhosts should be enabled in /etc/ssh/sshd_config.", "Warning"
    ),
    BaselineCheck(
        "CCE-4370-3",
        "HostbasedAuthentication should be disabled in /etc/ssh/sshd_config.",
        "Warning",
    ),
    BaselineCheck(
        "CCE-14716-5",
        "Users should not be allowed to set environment options for SSH "
        "(PermitUserEnvironment no).",
        "Warning",
    ),
    BaselineCheck(
        "CCE-4325-7", "SSH Protocol 2 should be set in /etc/ssh/sshd_config.", "Important"
    ),
)
_CRON_CHECK = BaselineCheck(
    "CCE-4304-2", "File permissions for /etc/anacrontab should be set to root:root 600.", "Critical"
)


def _cron(shell: str, command: str) -> Step:
    # cron runs every entry through "/bin/sh -c"; the audit log names the real binary.
    return Step(shell, f"/bin/sh -c {command}")


def _hourly(shell: str) -> Job:
    return Job(
        "cron.hourly",
        _HOUR,
        timedelta(minutes=17),
        "root",
        (
            _cron(shell, "   cd / && run-parts --report /etc/cron.hourly"),
            Step("/usr/bin/run-parts", "run-parts --report /etc/cron.hourly"),
        ),
    )


def _logrotate(at: timedelta) -> Job:
    return Job(
        "logrotate",
        _DAY,
        at,
        "root",
        (Step("/usr/sbin/logrotate", "/usr/sbin/logrotate /etc/logrotate.conf"),),
        launcher=None,
        seconds=3,
    )


def _apt(shell: str, mirror: str) -> Job:
    return Job(
        "apt-daily",
        timedelta(hours=12),
        timedelta(hours=6, minutes=4),
        "root",
        (
            Step(shell, "/bin/sh /usr/lib/apt/apt.systemd.daily update"),
            Step("/usr/bin/apt-get", "apt-get -qq -y update"),
            Step("/usr/lib/apt/methods/http", "/usr/lib/apt/methods/http"),
        ),
        connects=((mirror, 80, "TCP"), (mirror, 80, "TCP")),
        launcher=None,
        seconds=9,
    )


def _sshd(command_line: str = "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups") -> Service:
    return Service(
        "sshd",
        "/usr/sbin/sshd",
        command_line,
        "root",
        (Listener("TCP", ANY, 22), Listener("TCP", ANY6, 22)),
    )


_CRON = Service("cron", "/usr/sbin/cron", "/usr/sbin/cron -f", "root")
_CHRONY = Service(
    "chronyd", "/usr/sbin/chronyd", "/usr/sbin/chronyd -F 1", "_chrony",
    (Listener("UDP", "127.0.0.1", 323),),
)  # fmt: skip
_MGMT_SSH = FirewallRule("TCP", 22, MANAGEMENT_SUBNET)

CAMERA = DeviceProfile(
    kind="camera",
    description="IP camera on Buildroot: busybox, dropbear, lighttpd web UI, RTSP to the NVR",
    group="cameras",
    os=OsInfo(
        name="Linux",
        version="5.10.120 #1 SMP PREEMPT Tue Mar 14 10:12:45 UTC 2023",
        vendor="Buildroot 2022.02.9",
        architecture="armv7l",
        bios_version="U-Boot 2021.01",
        boot_device="/dev/mmcblk0p2",
        memory_kb=509_704,
        swap_kb=0,
    ),
    accounts=(
        Account("root", 0, (("root", 0),)),
        _system("daemon", 1),
        _system("bin", 2),
        _system("sys", 3),
        _system("www-data", 33),
        Account("admin", 1000, (("admin", 1000), ("video", 44))),
        Account("camd", 1001, (("camd", 1001), ("video", 44))),
        Account("nobody", 65534, (_NOGROUP,)),
    ),
    services=(
        Service(
            "dropbear",
            "/usr/sbin/dropbear",
            "/usr/sbin/dropbear -R -p 22",
            "root",
            (Listener("TCP", ANY, 22),),
        ),
        Service(
            "lighttpd",
            "/usr/sbin/lighttpd",
            "/usr/sbin/lighttpd -D -f /etc/lighttpd/lighttpd.conf",
            "www-data",
            (Listener("TCP", ANY, 80), Listener("TCP", ANY, 443)),
        ),
        Service(
            "camd",
            "/usr/bin/camd",
            "/usr/bin/camd --config /etc/camd/camd.conf",
            "camd",
            (Listener("TCP", ANY, 554), Listener("UDP", ANY, 3702)),
        ),
        Service("ntpd", "/bin/busybox", f"/usr/sbin/ntpd -n -p {ROUTER}", "root"),
        Service("cron", "/bin/busybox", "/usr/sbin/crond -f -c /etc/crontabs", "root"),
    ),
    jobs=(
        Job(
            "snapshot-upload",
            timedelta(minutes=15),
            timedelta(minutes=2),
            "camd",
            (
                Step("/bin/busybox", "sh -c /usr/bin/camd-snapshot --upload"),
                Step("/usr/bin/camd-snapshot", "/usr/bin/camd-snapshot --upload"),
            ),
            connects=((NVR, 8080, "TCP"),),
        ),
        Job(
            "firmware-check",
            _DAY,
            timedelta(hours=3, minutes=17),
            "root",
            (
                Step("/bin/busybox", "sh -c /usr/sbin/fw-check --channel stable"),
                Step("/usr/sbin/fw-check", "/usr/sbin/fw-check --channel stable"),
            ),
            connects=((FIRMWARE_CDN, 443, "TCP"),),
            seconds=4,
        ),
    ),
    chatter=(
        Chatter("ntpd", "Out", ROUTER, 123, "UDP", 3.5),
        Chatter("camd", "In", NVR, 554, "TCP", 0.4),
    ),
    logins=LoginHabits(
        admins=("admin",),
        sessions_per_day=0.4,
        password_share=0.6,
        typo_share=0.3,
        commands=(
            Step("/usr/bin/camd-ctl", "camd-ctl status"),
            Step("/bin/busybox", "tail -n 50 /var/log/messages"),
            Step("/bin/busybox", "df -h /data"),
        ),
        daemon="dropbear",
        shell=Step("/bin/busybox", "-sh"),
    ),
    firewall=(
        _MGMT_SSH,
        FirewallRule("TCP", 80, MANAGEMENT_SUBNET),
        FirewallRule("TCP", 443, MANAGEMENT_SUBNET),
        FirewallRule("TCP", 554, NVR),
        FirewallRule("UDP", 3702, None),
    ),
    baseline=(
        _CRON_CHECK,
        BaselineCheck(
            "CCE-3660-8",
            "PermitEmptyPasswords should be disabled in the SSH server configuration.",
            "Critical",
        ),
        BaselineCheck(
            "CCE-3845-5", "The idle timeout of the SSH server should be set.", "Informational"
        ),
    ),
    attack=AttackSurface(
        entry="lighttpd",
        sh="/bin/busybox",
        bash=None,
        downloader=("/bin/busybox", "wget"),
        iptables="/usr/sbin/xtables-legacy-multi",
        ufw=False,
        python=None,
        web=True,
    ),
)

GATEWAY = DeviceProfile(
    kind="gateway",
    description="Debian 12 IoT gateway: Node-RED flows, a Mosquitto bridge to the site broker",
    group="gateways",
    os=OsInfo(
        name="Linux",
        version="6.1.0-18-arm64 #1 SMP Debian 6.1.76-1 (2024-02-01)",
        vendor="Debian GNU/Linux 12 (bookworm)",
        architecture="aarch64",
        bios_version="U-Boot 2023.01",
        boot_device="/dev/mmcblk0p2",
        memory_kb=3_884_300,
        swap_kb=1_048_572,
    ),
    accounts=(
        *_DEBIAN_BASE,
        Account("sshd", 101, (_NOGROUP,)),
        Account("_chrony", 102, (("_chrony", 106),)),
        Account("mosquitto", 103, (("mosquitto", 108),)),
        Account("systemd-resolve", 996, (("systemd-resolve", 996),)),
        Account("admin", 1000, (("admin", 1000), ("adm", 4), ("systemd-journal", 999))),
        Account("ops", 1002, (("ops", 1002), ("adm", 4), ("systemd-journal", 999))),
        Account("nodered", 1001, (("nodered", 1001), ("dialout", 20))),
    ),
    services=(
        _sshd(),
        Service(
            "mosquitto",
            "/usr/sbin/mosquitto",
            "/usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf",
            "mosquitto",
            (Listener("TCP", "127.0.0.1", 1883),),
        ),
        Service(
            "node-red",
            "/usr/bin/node",
            "node-red --max-old-space-size=512",
            "nodered",
            (Listener("TCP", ANY, 1880),),
        ),
        _CHRONY,
        Service(
            "systemd-resolved",
            "/lib/systemd/systemd-resolved",
            "/lib/systemd/systemd-resolved",
            "systemd-resolve",
            (Listener("UDP", "127.0.0.53", 53), Listener("TCP", "127.0.0.53", 53)),
        ),
        _CRON,
    ),
    jobs=(
        Job(
            "healthcheck",
            timedelta(minutes=5),
            timedelta(minutes=1),
            "nodered",
            (
                _cron("/usr/bin/dash", "/usr/bin/python3 /usr/local/lib/gw/healthcheck.py"),
                Step("/usr/bin/python3.11", "/usr/bin/python3 /usr/local/lib/gw/healthcheck.py"),
            ),
            connects=((BROKER, 8883, "TCP"),),
        ),
        _hourly("/usr/bin/dash"),
        _apt("/usr/bin/dash", DEBIAN_MIRROR),
        _logrotate(timedelta(0)),
    ),
    chatter=(
        Chatter("chronyd", "Out", ROUTER, 123, "UDP", 2.0),
        Chatter("systemd-resolved", "Out", ROUTER, 53, "UDP", 6.0),
        Chatter("mosquitto", "Out", BROKER, 8883, "TCP", 0.15),
        Chatter("node-red", "Out", PLCS[0], 502, "TCP", 0.5),
    ),
    logins=LoginHabits(
        admins=("admin", "ops"),
        sessions_per_day=1.5,
        password_share=0.15,
        typo_share=0.3,
        commands=(
            Step("/usr/bin/systemctl", "systemctl status mosquitto"),
            Step("/usr/bin/systemctl", "systemctl status node-red"),
            Step("/usr/bin/journalctl", "journalctl -u node-red -n 100 --no-pager"),
            Step("/usr/bin/tail", "tail -n 50 /var/log/syslog"),
        ),
        daemon="sshd",
        shell=Step("/usr/bin/bash", "-bash"),
    ),
    firewall=(_MGMT_SSH, FirewallRule("TCP", 1880, MANAGEMENT_SUBNET)),
    baseline=(*_SSH_CHECKS, _CRON_CHECK),
    attack=AttackSurface(
        entry="node-red",
        sh="/usr/bin/dash",
        bash="/usr/bin/bash",
        downloader=("/usr/bin/curl", "curl"),
        iptables="/usr/sbin/xtables-nft-multi",
        ufw=True,
        python="/usr/bin/python3.11",
    ),
)

SENSOR_HUB = DeviceProfile(
    kind="sensor-hub",
    description="Raspberry Pi sensor hub: a Python collector, batches published to the broker",
    group="sensors",
    os=OsInfo(
        name="Linux",
        version="6.1.21-v7+ #1642 SMP Mon Apr  3 17:20:52 BST 2023",
        vendor="Raspbian GNU/Linux 11 (bullseye)",
        architecture="armv7l",
        bios_version=None,
        boot_device="/dev/mmcblk0p2",
        memory_kb=948_304,
        swap_kb=102_396,
    ),
    accounts=(
        *_DEBIAN_BASE,
        Account("systemd-timesync", 997, (("systemd-timesync", 997),)),
        Account("avahi", 108, (("avahi", 114),)),
        Account("sshd", 109, (_NOGROUP,)),
        Account(
            "pi",
            1000,
            (
                ("pi", 1000),
                ("adm", 4),
                ("dialout", 20),
                ("video", 44),
                ("plugdev", 46),
                ("gpio", 997),
                ("i2c", 998),
            ),
        ),
        Account("sensorhub", 999, (("sensorhub", 995), ("dialout", 20), ("gpio", 997))),
    ),
    services=(
        _sshd("/usr/sbin/sshd -D"),
        Service(
            "avahi-daemon",
            "/usr/sbin/avahi-daemon",
            "avahi-daemon: running [raspberrypi.local]",
            "avahi",
            (Listener("UDP", ANY, 5353),),
        ),
        Service(
            "sensorhub",
            "/usr/bin/python3.9",
            "/usr/bin/python3 /opt/sensorhub/hub.py --config /etc/sensorhub.yaml",
            "sensorhub",
            (Listener("TCP", ANY, 8080),),
        ),
        Service(
            "systemd-timesyncd",
            "/lib/systemd/systemd-timesyncd",
            "/lib/systemd/systemd-timesyncd",
            "systemd-timesync",
        ),
        _CRON,
    ),
    jobs=(
        Job(
            "upload",
            timedelta(minutes=5),
            timedelta(0),
            "sensorhub",
            (
                _cron("/usr/bin/dash", "/opt/sensorhub/bin/upload.sh"),
                Step("/usr/bin/dash", "/bin/sh /opt/sensorhub/bin/upload.sh"),
                Step(
                    "/usr/bin/mosquitto_pub",
                    f"mosquitto_pub -h {BROKER} -p 8883 --cafile /etc/ssl/certs/site-ca.pem "
                    "-t site/sensors/batch -f /var/lib/sensorhub/batch.json",
                ),
            ),
            connects=((BROKER, 8883, "TCP"),),
        ),
        _hourly("/usr/bin/dash"),
        _logrotate(timedelta(hours=6, minutes=25)),
    ),
    chatter=(
        Chatter("systemd-timesyncd", "Out", ROUTER, 123, "UDP", 1.0),
        Chatter("sensorhub", "Out", PLCS[1], 502, "TCP", 0.5),
    ),
    logins=LoginHabits(
        admins=("pi",),
        sessions_per_day=0.5,
        password_share=0.5,
        typo_share=0.3,
        commands=(
            Step("/usr/bin/systemctl", "systemctl status sensorhub"),
            Step("/usr/bin/journalctl", "journalctl -u sensorhub -n 50 --no-pager"),
            Step("/usr/bin/ls", "ls -l /var/lib/sensorhub"),
        ),
        daemon="sshd",
        shell=Step("/usr/bin/bash", "-bash"),
    ),
    firewall=(_MGMT_SSH, FirewallRule("TCP", 8080, MANAGEMENT_SUBNET)),
    baseline=(
        *_SSH_CHECKS[:3],
        BaselineCheck("CCE-4365-3", "The avahi-daemon service should be disabled.", "Warning"),
        BaselineCheck("CCE-4355-4", "The bluetooth/hidd service should be disabled.", "Warning"),
    ),
    attack=AttackSurface(
        entry="sensorhub",
        sh="/usr/bin/dash",
        bash="/usr/bin/bash",
        downloader=("/usr/bin/curl", "curl"),
        iptables="/usr/sbin/xtables-nft-multi",
        ufw=False,
        python="/usr/bin/python3.9",
    ),
)

EDGE_CONTROLLER = DeviceProfile(
    kind="edge-controller",
    description="Ubuntu industrial PC bridging Modbus PLCs, scraped by Prometheus",
    group="edge",
    os=OsInfo(
        name="Linux",
        version="5.15.0-97-generic #107-Ubuntu SMP Wed Feb 7 13:26:48 UTC 2024",
        vendor="Ubuntu 22.04.4 LTS",
        architecture="x86_64",
        bios_version="American Megatrends Inc. 5.19",
        boot_device="/dev/nvme0n1p2",
        memory_kb=8_038_912,
        swap_kb=2_097_148,
    ),
    accounts=(
        *_DEBIAN_BASE,
        Account("syslog", 104, (("syslog", 111), ("adm", 4))),
        Account("sshd", 110, (_NOGROUP,)),
        Account("_chrony", 114, (("_chrony", 121),)),
        Account("prometheus", 997, (("prometheus", 997),)),
        Account("modbus", 998, (("modbus", 996), ("dialout", 20))),
        Account("ops", 1000, (("ops", 1000), ("adm", 4), ("systemd-journal", 999))),
        Account("deploy", 1001, (("deploy", 1001),)),
    ),
    services=(
        _sshd(),
        Service(
            "modbus-bridge",
            "/opt/modbus-bridge/bin/modbus-bridge",
            "/opt/modbus-bridge/bin/modbus-bridge --config /etc/modbus-bridge/bridge.toml",
            "modbus",
            (Listener("TCP", ANY, 5020),),
        ),
        Service(
            "node_exporter",
            "/usr/local/bin/node_exporter",
            "/usr/local/bin/node_exporter --web.listen-address=:9100",
            "prometheus",
            (Listener("TCP", ANY6, 9100),),
        ),
        _CHRONY,
        Service("rsyslogd", "/usr/sbin/rsyslogd", "/usr/sbin/rsyslogd -n -iNONE", "syslog"),
        _CRON,
    ),
    jobs=(
        Job(
            "config-backup",
            _HOUR,
            timedelta(minutes=40),
            "deploy",
            (
                _cron("/usr/bin/dash", "/usr/local/bin/bridge-backup.sh"),
                Step("/usr/bin/dash", "/bin/sh /usr/local/bin/bridge-backup.sh"),
                Step("/usr/bin/rsync", f"rsync -a /etc/modbus-bridge/ backup@{BACKUP}:edge/"),
                Step(
                    "/usr/bin/ssh",
                    f"ssh -l backup {BACKUP} rsync --server -logDtpre.iLsfxCIvu . edge/",
                ),
            ),
            connects=((BACKUP, 22, "TCP"),),
            seconds=4,
        ),
        _hourly("/usr/bin/dash"),
        _apt("/usr/bin/dash", UBUNTU_MIRROR),
        _logrotate(timedelta(0)),
    ),
    chatter=(
        Chatter("modbus-bridge", "Out", PLCS[0], 502, "TCP", 0.5),
        Chatter("modbus-bridge", "Out", PLCS[1], 502, "TCP", 0.5),
        Chatter("chronyd", "Out", ROUTER, 123, "UDP", 2.0),
        Chatter("node_exporter", "In", PROMETHEUS, 9100, "TCP", 1.0),
        Chatter("rsyslogd", "Out", SYSLOG, 514, "TCP", 0.1),
    ),
    logins=LoginHabits(
        admins=("ops",),
        sessions_per_day=1.0,
        password_share=0.1,
        typo_share=0.3,
        commands=(
            Step("/usr/bin/systemctl", "systemctl status modbus-bridge"),
            Step("/usr/bin/journalctl", "journalctl -u modbus-bridge --since -1h --no-pager"),
            Step("/usr/bin/tail", "tail -n 100 /var/log/syslog"),
        ),
        daemon="sshd",
        shell=Step("/usr/bin/bash", "-bash"),
    ),
    firewall=(
        _MGMT_SSH,
        FirewallRule("TCP", 5020, SITE_SERVICES_SUBNET),
        FirewallRule("TCP", 9100, PROMETHEUS),
    ),
    baseline=(*_SSH_CHECKS, _CRON_CHECK),
    attack=AttackSurface(
        entry="modbus-bridge",
        sh="/usr/bin/dash",
        bash="/usr/bin/bash",
        downloader=("/usr/bin/curl", "curl"),
        iptables="/usr/sbin/xtables-nft-multi",
        ufw=True,
        python="/usr/bin/python3.10",
    ),
)

#: Every device kind, by name.
PROFILES: dict[str, DeviceProfile] = {
    profile.kind: profile for profile in (CAMERA, GATEWAY, SENSOR_HUB, EDGE_CONTROLLER)
}
