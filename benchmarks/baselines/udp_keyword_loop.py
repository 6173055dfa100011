"""Baseline: the classic UDP "robot", a blocking recvfrom loop answering by keyword (benchmark only)."""

from __future__ import annotations

import socket
import sys

ANSWERS = {
    "话费": "查询话费余额:发送短信 CXHF 到 10086,或在电话菜单按 1 输入手机号码,也可以在中国移动 App 首页查看。\n"
}
FALLBACK = "抱歉,我没有听懂。您可以换个说法,或拨打 10086 按 0 转人工服务。\n"


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    while True:
        data, addr = sock.recvfrom(2048)
        question = data.decode("utf-8", "replace")
        for keyword, answer in ANSWERS.items():
            if keyword in question:
                reply = answer
                break
        else:
            reply = FALLBACK
        sock.sendto(reply.encode(), addr)


if __name__ == "__main__":
    main()
