"""A small rtnetlink client (stdlib socket + struct) for what podpy's bridge networks need.

Why not pyroute2: importing pyroute2 0.9's IPRoute costs ~0.3 s (0.6 s through the package
`__init__`): it pulls asyncio, ssl, multiprocessing, unittest and every tc message class. The
network helper runs once per container start on a bridge network (root's default network
included), so that import was most of a rootful `podpy run`. podpy needs a dozen requests:
look links up, create a bridge or a veth pair, set name/MAC/master/namespace/up, add an IPv4
address, add a default route, delete a link, list addresses. The tests check this module
against pyroute2 and iproute2 (`ip -j`).

Errors are OSError with the kernel's errno (EEXIST reads "File exists", as `ip` says).
"""

from __future__ import annotations

import os
import socket
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterator, List, Optional, Tuple

# linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h, linux/veth.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE = 24
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER = 1, 3, 10
IFLA_LINKINFO, IFLA_NET_NS_PID = 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_GATEWAY = 5
IFF_UP = 0x1
NLA_F_NESTED = 0x8000
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
RT_SCOPE_HOST = 254

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBi")  # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_RTATTR = struct.Struct("=HH")


def _align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr (type-length-value), padded to 4 bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def parse_attrs(data: bytes, offset: int = 0) -> Dict[int, bytes]:
    """rtattrs from `offset` to the end: {type (flags masked): payload}; the last one wins."""
    out: Dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        out[kind & ~NLA_F_NESTED & 0x7FFF] = data[offset + _RTATTR.size : offset + length]
        offset += _align(length)
    return out


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


class RTNL:
    """One NETLINK_ROUTE socket in the caller's current network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self.sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> RTNL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # --- transport --------------------------------------------------------------------------

    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, self._seq, 0)
        self.sock.send(header + body)
        return self._seq

    def _replies(self, seq: int) -> Iterator[Tuple[int, bytes]]:
        """(type, body) of each reply to `seq` until DONE or the ACK; errors raise OSError."""
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, msg_type, _flags, msg_seq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return
                body = data[offset + _NLMSGHDR.size : offset + length]
                offset += _align(length)
                if msg_seq != seq:
                    continue  # a late reply to an earlier request
                if msg_type == NLMSG_DONE:
                    return
                if msg_type == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", body)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return  # the ACK
                yield msg_type, body

    def request(self, msg_type: int, body: bytes, flags: int = 0) -> None:
        """A change request; waits for the kernel's ACK (OSError on failure)."""
        for _ in self._replies(self._send(msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, body)):
            pass

    def dump(self, msg_type: int, body: bytes) -> List[bytes]:
        return [b for _, b in self._replies(self._send(msg_type, NLM_F_REQUEST | NLM_F_DUMP, body))]

    # --- links ------------------------------------------------------------------------------

    def link_index(self, ifname: str) -> Optional[int]:
        """The index of the link named `ifname` in this namespace, None if there is none."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(ifname))
        try:
            for _, reply in self._replies(self._send(RTM_GETLINK, NLM_F_REQUEST, body)):
                return int(_IFINFOMSG.unpack_from(reply)[2])
        except OSError as err:
            if err.errno in (19, 2):  # ENODEV, ENOENT: no such link
                return None
            raise
        return None

    def link_address(self, index: int) -> str:
        """The MAC address of link `index` (aa:bb:...)."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        for _, reply in self._replies(self._send(RTM_GETLINK, NLM_F_REQUEST, body)):
            return _mac_text(parse_attrs(reply, _IFINFOMSG.size).get(IFLA_ADDRESS, b""))
        raise OSError(19, f"no link with index {index}")

    def add_bridge(self, ifname: str) -> None:
        linkinfo = nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge"))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(ifname))
        self.request(RTM_NEWLINK, body + linkinfo, NLM_F_CREATE | NLM_F_EXCL)

    def add_veth(self, ifname: str, peer: str) -> None:
        peer_msg = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(peer))
        linkinfo = nested(
            IFLA_LINKINFO,
            attr(IFLA_INFO_KIND, b"veth"),
            nested(IFLA_INFO_DATA, nested(VETH_INFO_PEER, peer_msg)),
        )
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(ifname))
        self.request(RTM_NEWLINK, body + linkinfo, NLM_F_CREATE | NLM_F_EXCL)

    def set_link(
        self,
        index: int,
        *,
        up: bool = False,
        ifname: Optional[str] = None,
        mac: Optional[str] = None,
        master: Optional[int] = None,
        netns_pid: Optional[int] = None,
    ) -> None:
        """Change link `index`: bring it up, rename it, set its MAC, enslave it to `master`,
        or move it into the network namespace of `netns_pid` (one request)."""
        attrs = b""
        if ifname is not None:
            attrs += attr(IFLA_IFNAME, _name(ifname))
        if mac is not None:
            attrs += attr(IFLA_ADDRESS, bytes(int(part, 16) for part in mac.split(":")))
        if master is not None:
            attrs += attr(IFLA_MASTER, struct.pack("=I", master))
        if netns_pid is not None:
            attrs += attr(IFLA_NET_NS_PID, struct.pack("=I", netns_pid))
        flags = IFF_UP if up else 0
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, flags)
        self.request(RTM_NEWLINK, body + attrs)

    def delete_link(self, index: int) -> None:
        self.request(RTM_DELLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    # --- addresses and routes ---------------------------------------------------------------

    def ipv4_addresses(self, index: Optional[int] = None) -> List[Tuple[int, str, int]]:
        """(link index, address, prefix length) of every IPv4 address, or only link `index`'s."""
        out = []
        for reply in self.dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
            _family, prefixlen, _flags, _scope, link = _IFADDRMSG.unpack_from(reply)
            if index is not None and link != index:
                continue
            attrs = parse_attrs(reply, _IFADDRMSG.size)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw and len(raw) == 4:
                out.append((link, socket.inet_ntoa(raw), prefixlen))
        return out

    def add_ipv4_address(self, index: int, address: str, prefixlen: int) -> None:
        raw = socket.inet_aton(address)
        scope = RT_SCOPE_HOST if address.startswith("127.") else RT_SCOPE_UNIVERSE
        body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, scope, index)
        body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
        if prefixlen < 31:  # as netavark and `ip addr add ... brd +` set it
            host_bits = (1 << (32 - prefixlen)) - 1
            (value,) = struct.unpack("!I", raw)
            body += attr(IFA_BROADCAST, struct.pack("!I", value | host_bits))
        self.request(RTM_NEWADDR, body, NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: str) -> None:
        body = _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        )
        body += attr(RTA_GATEWAY, socket.inet_aton(gateway))
        self.request(RTM_NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL)
