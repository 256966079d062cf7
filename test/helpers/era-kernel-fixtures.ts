/**
 * dm-era metadata written by the Linux kernel itself (Debian linux-image-6.1.0-50-amd64, 6.1.176,
 * dm-era 1.0.0), for the decoder's tests: no userspace tool writes a committed current writeset,
 * and only the kernel's digest folds writesets into the era array and removes them from the tree.
 *
 * Made once, by hand, under QEMU TCG: the Debian kernel booted with an initramfs of busybox,
 * dmsetup and the modules virtio_pci, virtio_blk, dm-era (with dm-mod, dm-bufio,
 * dm-persistent-data, libcrc32c), two virtio disks: an 8 MiB metadata disk and a 64 MiB data disk
 * (1024 blocks of 128 sectors), both zeroed,
 * running `KERNEL_GUEST_INIT` below as /init (`mode=` on the kernel command line).
 *
 * `crash`: powered off with era 4 open (no suspend), so era 4 is the superblock's committed
 * current writeset. `clean`: `dmsetup remove` first (postsuspend archives era 4 into the tree).
 * The kernel's `dmsetup status` showed era 4 and the metadata snapshot at block 78 in both.
 * Stored: the used prefix of the metadata disk, zlib-compressed; the rest of the disk is zeros.
 */
import { inflateSync } from 'node:zlib';

/** The guest's /init that wrote the fixtures (kept to reproduce them; not run by the tests). */
export const KERNEL_GUEST_INIT = String.raw`#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /mods/*.ko; do insmod $m 2>/dev/null; done
sleep 1
MODE=$(cat /proc/cmdline | sed 's/.*mode=\([a-z]*\).*/\1/')
M=$(cat /sys/block/vda/dev); D=$(cat /sys/block/vdb/dev)
SECT=$(cat /sys/block/vdb/size)
echo "meta=$M data=$D sectors=$SECT mode=$MODE"
dmsetup create era --table "0 $SECT era $M $D 128" || echo CREATE FAILED
dmsetup mknodes
W() { for b in "$@"; do dd if=/dev/urandom of=/dev/mapper/era bs=65536 seek=$b count=1 oflag=direct conv=notrunc 2>/dev/null; done; echo "wrote $*"; }
dmsetup status era
W 3 4 100
dmsetup message era 0 checkpoint; dmsetup status era
W 5 200 1023 4
dmsetup message era 0 checkpoint; dmsetup status era
W 7 500 3
sleep 2
dmsetup message era 0 take_metadata_snap; dmsetup status era
W 9 600 601 602
dmsetup status era
if [ "$MODE" = clean ]; then dmsetup remove era; echo removed; fi
sync
echo DONE
poweroff -f
`;

/** Blocks of the data device written in each era, in the order the guest wrote them. */
export const KERNEL_WRITES: Record<number, number[]> = { 1: [3, 4, 100], 2: [5, 200, 1023, 4], 3: [7, 500, 3], 4: [9, 600, 601, 602] };
export const KERNEL_NR_BLOCKS = 1024;
export const KERNEL_BLOCK_SECTORS = 128;
export const KERNEL_METADATA_SNAP = 78;
/** The metadata disk's size. */
export const KERNEL_METADATA_BYTES = 8 * 1024 * 1024;

const IMAGES: Record<'crash' | 'clean', string> = {
  crash:
  'eNrt3XuQVmUZAPCzl1ygVVAsVArXT0QXvCdeQAW8gKiLhIaioAumNk4KIxnWNswyMsrFadRysAYz0Ylm/3BQgWzcNBTG9o90xsx0' +
  'yuximYVjMt0EL33v8h442OIfwbB87/f7DWeffc7ZZXaeHYbvfO/zvGfua+ufyD5GW8O6+SHWhA99tp4bEK/NirE22zPa8x+hvvtP' +
  '94eZ8drFMU6JcVIGAAAA5AbPXnLqtvv7sroYO8fEe2wAAACg4k15vfWZsH5fXMOfXOPeHwAAAFLyzYvuPzrEfN2/o5+aAAAAQGqe' +
  'W/zic2Htv7je31U+GpUGAAAAkjGjz8sTw/3/Jwrn3su2bfUHAAAAJOCmM1taNtdlWThCD8A+SgIAAADJWXNPw6YQG2JeWjFcUQAA' +
  'ACAxK89a9tvQ/5/3+4fPe+r/r1EqAEhG3u/XVykAoGpcuPG0G0Pvf3gdUO91AAAAACRpQb+5b4WYP/YvnwN4fIw1fwAAAEjF1Y8/' +
  'dEro+f9kzMM9v/3/ASBt+yoBAFSdLRu/fleIjTEvlZbYABAAAAASs27536a+X5NlA7Kta/7WAwAAACA9tz3/sw9D3C/meR/AWvP/' +
  'AAAAkIyDrpiwobj+3z+eN/8PAAAA6fhw9btzQhwQ81KpX7sNAAAAACAtNYOv/03Y/3//PM/s/w8AqeuvBABQdc7eb+2sEA+Ied4H' +
  'YP4fAAAA0tE2tPnO4vz/wHj+IKUBAACAZDwzc8wNIR4Y81KpX2YDAAAAAEjLi68883aY//9UzM3/A0D6BioBAFSdUs0di0L8dMzz' +
  'PgDz/wAAAJCOI6aOfLI4/z8oni/O/w9QJgAAAKhoRz/6003F+/0w/28DAAAAAEjLPWPfPT3M/x8cc/P/AJC+QUoAAFVnzrXHPhbi' +
  'ITHP+wDM/wMAAEA6Xups/mJY/x8c83DP31U+Ggs5APzf6rf3mAEA0HuWTXjq3hA/E/NSU5j/X9ShMgAAAJCOl398z5fC+v9nY27+' +
  'HwDSN0QJAKDqXD9q2AfF5/95PQAAAADpmXF149gQD415Pgew2v5/AAAAkIzlA4fdtbkuy8JRX86beviamsx7Ab1N/QEAANgVk3/x' +
  '2v4hHhbzUpz87xiuNgAAAJCKv3/rhdba7vv+rcLnPe3/Z/0ZANLRFGNfpQCAqvHIoNnLwz3/4YVzXeWj0X0/ALtDfZYdrAoAAL2u' +
  'bW3jg8X9/4fG801KAwAAAMm4tc/qP4X1/yNiHtb7e+r/BwDSMVQJAKDqDNu3z83dMeb5PoBrPf8PAAAAkrHl2acWF/v/j4znm3b2' +
  'Dd4UAAAAgIrz10Ov+UGIR8U8f/7finYPAAQAAIBUdLa+8W6Y/2+Oufl/AEjfkUoAAFXn1C0rZ4SYr/bnfQDm/wEAACAdB97U2Vac' +
  '/x8Rzzft7Bv2zJsC7X4zAAAAsPtMb7m9e+v/o2O+bf4/swEAAAAApOKrP394cZj/Pybm5v8BIH0jlAAAqs60f9z3oxCPjXneB2D+' +
  'HwAAANJx6dK+04rz/8fF88fv7BvM/wMAAEDFWbiwf13xfn/7/L8NAAAAACAVzw+df3mY/z8h5ub/ASB9xykBAFSd5SP/2L3Mf2LM' +
  '8z4A8/8AAACQji23HNMc1v8/F/Nwz99VPhpjXqtEAOyK+u09ZgAA9J5j19wwPsSTYp7P/5eyrH1Rh/oAAABACu57dFNLWOMfGXPz' +
  '/wCQvpOVAACqTr9V519bfP6f1wMAAACQnkeOX/dKiKfEPJ8DWG3/PwAAAEjG+JPm3bq5LsvCUV/OT+3ha8L7ALWZvQB7k/di9i7+' +
  'LQAAAJXmgEFNm0I8LealHa522AEQAAAAEjDxV9dODmuZo2IePu9p/z/rzwCQjrzfb7RSAEDV+EPr9C2h93+fbGv//8e9DtDzDAAA' +
  'AJXp6cYlU8J9/emFc13lo9E9PwC7Q32WnaAKAAC9bsK/vve74vP/zojn25UGAAAAklF37y1zwhr/mTEPc/49zf8DAOk4QwkAoOr8' +
  '86rV7SGOiXn+HIC1Y+z5BwAAAKl45/mXHi72/4+N59t36W8doLAAAACwF3niupMPCXFczEs7XF1R26FEAAAAUPFubnludJj/Pyvm' +
  '5v8BIH1jlQAAqs5+40YeF+LZMc/7AMz/AwAAQDq+/+YdTcX5/3Pi+UW79Lea/wcAAIC9yb8fmvmdEM+N+Ufn/zMbAAAAAEDFO2/j' +
  'gr+E+f/xMTf/DwDpO0cJAKDqzJ7Uf0OIE2Ke9wGY/wcAAIB0PPj7t5aF9f/zYh7u+bvKR2PM65QIgF1Rv73HDACA3tP56pUrQ5wY' +
  '84/M/5dPdNSqEgAAAFS2W9c8sDDc4J8fc/P/AJC+C5QAAKrOoK4hLxef/+f1AAAAAKRn8jt3vxHihTHP5wBW2/8PAAAAknHB+lVv' +
  'htgS8x3n/+8un3jgh6oEAAAAle3br61bEOKknVxva1g3P8TuXoC4KUD+bIC8Z2BPbRDYnv8I9d1/uj/k+xbkzy8Y5VcKAAAA/+PJ' +
  'xs7u9f+LYp73ATym/x8AAACScd2qzmmb67IsHGFNfXIPX1O+1L3GX1vI2bO8F7N38VBMoFL4PxsAyA1ZOu2lED8f8x3n/2eVT9Q2' +
  'dQxXJwAAAKhkM3+54RthLXNKzMPn72XbRv23sf4MAOnI+/1GKwUAVI3pX/vuxnDPf3HhXFe2fY8/fYMA7JL6LBuvCgAAve7ccb9u' +
  'fr8mywZkW9f8L8kvGHAGAACAZDx72I3N4Vb/CzEPff499f8DAOm4RAkAoOp8ecSfV4Q4Neb5PoCrPP8PAAAAkvH2bUtriv3/l+YX' +
  'dl//v7cRAAAAoJe9OPXOD0K8LOY9Pf9vRbsHAAIAAEAl+8/EM0aGpf5pMTf/DwDpu1QJAKDq3PTqxCUhXh7zvA/A/D8AAACk4/AR' +
  'J8wrzv9fkV/YffP/daoMAAAAvavlznktIU6PeY/z/5kNAAAAAKCSnfj6V84NS/0zYm7+HwDSd4USAEDVGfjC3NYQr4x53gdg/h8A' +
  'AADSsf6a+xuK8/9X5Rd23/x/gyoDAABA7xr/k6cXhNga857n/20AAAAAAJWsbeOcZWGpf2bMzf8DQPquUgIAqDp9j7psTYizYt4a' +
  'o/l/AAAASMd/AaNzX/M=',
  clean:
  'eNrt3WuMVdUVAOAzM7fy6CgotvioOl7xgfiu+FZABUQdpdSiIOggoo3xQbRWWxozRKMIxqAtwTZYC5razA+DCmjTqRaV2PlRSSy1' +
  'mtbah621xaiktgo+evewDxzsxR8dwnD3/b5wZs06dyBkEePdd6+1z/sD9nki+wyz+qy8JcSG8KXvxnsD42szYmzMto/2/K9Q6v4V' +
  'v2w0PcYJMZ6XAQAAALm9r5t7wqb1fUVTjJ0jtlheAwAAADVswuttz4b9++Ie/vgGa38AAABIyd3nP3BYiPm+f0d/NQEAAIDUvHDn' +
  'mhfC3n9xv7+rcjUrDQAAACRjat+Xx4X1/+cK9z7MNh31BwAAACTg+tNaW9c3ZVm4Qg/ATkoCAAAAyVm+oM+6EPvEvLzkUEUBAACA' +
  'xDx8+sI/hP7/vN8/fF+t/79BqQAgGXm/Xz+lAIC6ce7aE68Nvf/hfUDJ+wAAAABI0uz+N7wVYv7Yv3wO4MkR9vwBAAAgFdOffOj4' +
  '0PP/+ZiHNb/z/wEgbTsrAQDUnQ1rv31PiM0xL5fnOgAQAAAAErNy0T8nftSQZQOzjXv+9gMAAAAgPbev/uUnIe4S87wPYIX5fwAA' +
  'AEjGHhePXVXc/x8Q75v/BwAAgHR8suyDmSEOjHm53L/dAQAAAACQloa9r/p9OP9/1zzPnP8PAKkboAQAUHfO2GXFZSHuFvO8D8D8' +
  'PwAAAKRj1pCh84vz/4Pi/T2UBgAAAJLx7LQR14S4e8zL5f6ZAwAAAAAgLWteefbtMP//hZib/weA9A1SAgCoO+WGu+aE+MWY530A' +
  '5v8BAAAgHQdOHP5Ucf5/cLxfnP8fqEwAAABQ0w577Bfriuv9MP/vAAAAAABIy4KRH5wS5v/3jLn5fwBI32AlAIC6M/OKIx4Pca+Y' +
  '530A5v8BAAAgHS91Dr087P/vHfOw5u+qXM2FHAD+b6XNPWYAAPSehWOfvi/EL8W83BLm/+d0qAwAAACk4+WfLvh62P/fJ+bm/wEg' +
  'ffsqAQDUnatOOujj4vP/vB8AAACA9Eyd3jwyxP1ins8BLHP+HwAAACRj0aCD7lnflGXhKlXylio/05D5LKC3qT8AAAA9Mf7Xr+0a' +
  '4v4xL8fJ/45D1QYAAABS8c53X2xr7F73bxS+r3b+n/1nAEhHS4z9lAIA6sajg69bFNb8BxTudVWuZut+ALaFUpbtqQoAAL1u1orm' +
  'B4vn/w+J91uUBgAAAJJxa99lfw37/wfGPOz3V+v/BwDSMUQJAKDuHLRz3xu7Y8zzcwBXeP4fAAAAJGPD80/fWez/Pzjeb9nab/Ch' +
  'AAAAANScf+w348chHhLz/Pl/S9o9ABAAAABS0dn2xgdh/n9ozM3/A0D6DlYCAKg7J2x4eGqI+W5/3gdg/h8AAADSsfv1nbOK8//D' +
  '4v2Wrf2G7fOhQLt/GQAAANh2prTe0X30/2Ex3zT/nzkAAAAAAFLxzV89cmeY/z885ub/ASB9w5QAAOrOpH/d/0SIR8Q87wMw/w8A' +
  'AADpuHBev0nF+f8j4/2jtvYbzP8DAABAzbnttgFNxfX+5vl/BwAAAABAKlYPuWVymP8/Oubm/wEgfUcqAQDUnUXD/9K9zX9MzPM+' +
  'APP/AAAAkI4NNx8+NOz/fznmYc3fVbmaY96oRAD0RGlzjxkAAL3niOXXjAnx2Jjn8//lLGuf06E+AAAAkIL7H1vXGvb4h8fc/D8A' +
  'pO84JQCAutN/6dlXFJ//5/0AAAAApOfRo1a+EuLxMc/nAJY5/w8AAACSMebYm25d35Rl4SpV8hOq/Ez4HKAxcxZgb/JZzI7FfwsA' +
  'AECt2W1wy7oQT4x5eYtXO5wACAAAAAkY99srxoe9zJNiHr6vdv6f/WcASEfe73eyUgBA3fhz25QNofd/p2xj//9nvQ/Q8wwAAAC1' +
  '6ZnmuRPCuv6Uwr2uytVszQ/AtlDKsqNVAQCg14399w//WHz+36nxfrvSAAAAQDKa7rt5ZtjjPy3mYc6/2vw/AJCOU5UAAOrOe5cu' +
  'aw9xRMzz5wCsGOHMPwAAAEjFu6tfeqTY/z8y3m/v0Z86UGEBAABgB/KzK4/bK8RRMS9v8eqSxg4lAgAAgJp3Y+sLJ4f5/9Njbv4f' +
  'ANI3UgkAoO7sMmr4kSGeEfO8D8D8PwAAAKTjR2/e1VKc/z8z3p/Toz/V/D8AAADsSP7z0LTvhzg65p+e/88cAAAAAAA176y1s/8e' +
  '5v/HxNz8PwCk70wlAIC6c915A1aFODbmeR+A+X8AAABIx4N/emth2P8/K+Zhzd9VuZpj3qREAPREaXOPGQAAvafz1UseDnFczD81' +
  '/1+50dGoSgAAAFDbbl2++LawwD875ub/ASB95ygBANSdwV37vlx8/p/3AwAAAJCe8e/e+0aI58Y8nwNY5vw/AAAASMY5zy19M8TW' +
  'mG85/39v5cbin6gSAAAA1LbvvbZydojnbeX1WX1W3hJidy9APBQgfzZA3jOwvQ4IbM//CqXuX91f8nML8ucXnOSfFAAAAP7HU82d' +
  '3fv/58c87wN4XP8/AAAAJOPKpZ2T1jdlWbjCnvr4Kj9Teal7j7+xkLN9+Sxmx+KhmECt8P9sACC377xJL4X4lZhvOf9/WeVGY0vH' +
  'oeoEAAAAtWzab1Z9J+xlToh5+P7DbNOo/yb2nwEgHXm/38lKAQB1Y8q3frA2rPm/WrjXlW0+40/fIAA9UsqyMaoAANDrRo/63dCP' +
  'GrJsYLZxz/+C/AUDzgAAAJCM5/e/dmhY6n8t5qHPv1r/PwCQjguUAADqztXD/rYkxIkxz88BXOr5fwAAAJCMt2+f11Ds/78wf2Hb' +
  '9f/7GAEAAAB62ZqJ8z8O8aKYV3v+35J2DwAEAACAWvb+uFOHh63+STE3/w8A6btQCQCg7lz/6ri5IU6Oed4HYP4fAAAA0nHAsKNv' +
  'Ks7/X5y/sO3m/5tUGQAAAHpX6/ybWkOcEvOq8/+ZAwAAAACglh3z+jdGh63+qTE3/w8A6btYCQCg7gx68Ya2EC+Jed4HYP4fAAAA' +
  '0vHcjAf6FOf/L81f2Hbz/31UGQAAAHrXmJ8/MzvEtphXn/93AAAAAADUsllrZy4MW/3TYm7+HwDSd6kSAEDd6XfIRctDvCzmbTGa' +
  '/wcAAIB0LH5nyONh/396zMOav6tyNce8pEQA9ERpc48ZAAC95/jJi64O8fKYV5v/r9xrn9NfrQAAAKBmvXfHqyHMiGn+OYD+fwAA' +
  'AEjHfwELqGrG',
};

/** The whole 8 MiB metadata disk as the kernel left it. */
export function kernelEraMetadata(which: 'crash' | 'clean'): Buffer {
  const disk = Buffer.alloc(KERNEL_METADATA_BYTES);
  inflateSync(Buffer.from(IMAGES[which], 'base64')).copy(disk);
  return disk;
}
