"""cas_threads.py PATH TASKS N: TASKS asyncio tasks each make N increments of the counter in
PATH: the read in the event loop's thread, the write in an executor thread, retried on
FileExistsError. Prints "ACKED VALUE": with no lost update both are TASKS * N."""
import asyncio
import concurrent.futures
import sys

P, TASKS, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(P, "w") as f:
    f.write("0")
ex = concurrent.futures.ThreadPoolExecutor(TASKS)
acked = 0


async def task():
    global acked
    loop = asyncio.get_running_loop()
    for _ in range(N):
        while True:
            with open(P) as f:
                n = int(f.read())

            def write():
                with open(P, "w") as f:
                    f.write(str(n + 1))
            try:
                await loop.run_in_executor(ex, write)
                acked += 1
                break
            except FileExistsError:
                continue


async def main():
    await asyncio.gather(*[task() for _ in range(TASKS)])

asyncio.run(main())
with open(P) as f:
    print(acked, f.read())
